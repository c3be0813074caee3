"""textwatch: a streaming OCR daemon (camera/RTSP frames in, text on a ZeroMQ bus out)."""

import os

# OpenCV prints decoder warnings straight to stderr; our errors say the same in one line.
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
# FFmpeg's own log ("moov atom not found", RTSP retries) goes to stderr past OpenCV's level:
# quiet (-8), since capture reports each failure as one event and one log line. Set the
# variable (e.g. 24 = warning) to see FFmpeg's messages when debugging a camera.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

__version__ = "0.1.0"
