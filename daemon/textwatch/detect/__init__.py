"""Text detection: darknet cfg parsing, letterbox geometry, the OpenCV DNN runtime, box merging."""
