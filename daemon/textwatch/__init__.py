"""textwatch: a streaming OCR daemon (camera/RTSP frames in, text on a ZeroMQ bus out)."""

import os

# Native libraries write raw lines to stderr, which is the daemon's JSON log stream: OpenCV
# silent (its errors come back as cv2.error, reported by us in one JSON line), FFmpeg's own
# log ("moov atom not found", RTSP retries; it goes through OpenCV's logger) quiet (-8), since
# capture reports each failure as one event and one log line. Regression (issue 22): garbage
# MJPEG from one camera put ~55 raw FFmpeg lines a second into the log. To debug a camera,
# set both, e.g. OPENCV_LOG_LEVEL=INFO OPENCV_FFMPEG_LOGLEVEL=24 (warning).
os.environ.setdefault("OPENCV_LOG_LEVEL", "SILENT")
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

__version__ = "0.1.0"
