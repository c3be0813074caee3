"""textwatch: a streaming OCR daemon (camera/RTSP frames in, text on a ZeroMQ bus out)."""

__version__ = "0.1.0"
