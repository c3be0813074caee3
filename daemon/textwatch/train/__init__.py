"""Training the text detector in PyTorch and exporting it as darknet cfg + weights.

The daemon never imports this package on CPU-only installs: it needs the optional
`torch` extra. `model` mirrors OpenCV DNN's darknet importer layer by layer so a
network trained here runs unchanged under `cv2.dnn.readNetFromDarknet`; `loss`
is the YOLOv4 loss; `trainer` is `textwatch train`.
"""
