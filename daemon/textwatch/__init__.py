"""textwatch: a streaming OCR daemon (camera/RTSP frames in, text on a ZeroMQ bus out)."""

import os

# OpenCV prints decoder warnings straight to stderr; our errors say the same in one line.
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")

__version__ = "0.1.0"
