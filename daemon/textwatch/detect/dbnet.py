"""detector.model = "ppocr": PP-OCRv6's small DB text detector on ONNX Runtime.

The quality choice beside the default YOLOv4 (docs/detector.md has both side
by side): slower on a CPU, but its boxes follow the ends of each line. It is
also the teacher that labels our detector's training images (train/teacher.py).
The model is a file of the pinned rapidocr==3.10.0 wheel (`textwatch.onnx`);
this module re-implements the pre- and post-processing that PaddleOCR's
DB detector defines (as rapidocr's `ch_ppocr_det` does), with cv2 only:

* input: the BGR frame scaled so its shorter side is `ppocr_side` (736, as
  rapidocr; frames are never scaled down for it) unless the longer side would
  pass `ppocr_max_side`, each side rounded to a multiple of 32;
  `(x / 255 - 0.5) / 0.5`, CHW;
* output: a probability map of text *kernels* (each line shrunk by DB's
  training rule); pixels above `THRESH` are text, dilated by 2x2;
* each connected region's minimum-area rectangle is kept when its mean
  probability reaches `ppocr_box_score`, then grown back to the whole line by
  DB's unclip distance `area x UNCLIP / perimeter` on every side (for a
  rectangle this equals the polygon offset PaddleOCR computes with pyclipper).

textwatch crops axis-aligned boxes, so each rotated rectangle becomes its
bounding box in frame pixels. No padding is added: DB's unclip already puts
the box on the line's ink (detector.padding belongs to YOLOv4's boxes).
"""

from __future__ import annotations

from typing import Final

import cv2
import numpy as np
import numpy.typing as npt

from textwatch.config import DetectorSettings
from textwatch.detect.runtime import Detection
from textwatch.log import get_logger
from textwatch.onnx import PROVIDERS, session, wheel_model

MODEL_FILE: Final = "models/PP-OCRv6_det_small.onnx"
PURPOSE: Final = "detector.model = 'ppocr'"
STRIDE: Final = 32  # the network's input sides are multiples of this
THRESH: Final = 0.3  # a pixel of the probability map above this is text (PaddleOCR's det_db_thresh)
UNCLIP: Final = 1.6  # DB's unclip ratio (PaddleOCR's det_db_unclip_ratio in rapidocr's config)
MIN_SIDE_PX: Final = 3  # regions thinner than this on the map are noise
MAX_CANDIDATES: Final = 1000  # most regions taken from one map (bounds the work per frame)


class PaddleDetector:
    """PP-OCRv6 det small in one ONNX Runtime session; one per process."""

    def __init__(self, settings: DetectorSettings) -> None:
        self.settings = settings
        device = "cuda" if settings.backend.startswith("cuda") else "cpu"
        path = wheel_model(MODEL_FILE, PURPOSE)
        self.session = session(path, settings.threads, [PROVIDERS[device]], PURPOSE)
        self.input_name: str = self.session.get_inputs()[0].name
        get_logger().info("detector_ready", model="ppocr", file=path.name, device=device, threads=settings.threads)

    def detect(self, frame: np.ndarray) -> list[Detection]:
        return self.detect_batch([frame])[0]

    def detect_batch(self, frames: list[np.ndarray]) -> list[list[Detection]]:
        """One forward per frame: each frame has its own input size (no letterbox to share)."""
        return [self._detect(frame) for frame in frames]

    def _detect(self, frame: np.ndarray) -> list[Detection]:
        h, w = frame.shape[:2]
        if h < 2 or w < 2:
            return []
        blob = self.prepare(frame)
        prob = self.session.run(None, {self.input_name: blob})[0][0, 0]
        return self.boxes(prob, w, h)

    def input_size(self, width: int, height: int) -> tuple[int, int]:
        """(net width, net height) for a frame: shorter side up to ppocr_side, longer side capped."""
        s = self.settings
        scale = max(1.0, s.ppocr_side / min(width, height))
        scale = min(scale, s.ppocr_max_side / max(width, height))
        def side(v: int) -> int:
            return max(STRIDE, round(v * scale / STRIDE) * STRIDE)
        return side(width), side(height)

    def prepare(self, frame: np.ndarray) -> npt.NDArray[np.float32]:
        """The frame as the network wants it: BGR, resized, in [-1, 1], NCHW."""
        if frame.ndim == 2:
            frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
        width, height = self.input_size(frame.shape[1], frame.shape[0])
        image = cv2.resize(frame[:, :, :3], (width, height), interpolation=cv2.INTER_LINEAR)
        return (image.transpose(2, 0, 1)[None].astype(np.float32) / 127.5 - 1.0).astype(np.float32)

    def boxes(self, prob: npt.NDArray[np.float32], width: int, height: int) -> list[Detection]:
        """Line boxes in frame pixels from one probability map (the module docstring's rule)."""
        mask = cv2.dilate((prob > THRESH).astype(np.uint8), np.ones((2, 2), np.uint8))
        contours, _ = cv2.findContours(mask, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
        sx, sy = width / prob.shape[1], height / prob.shape[0]
        out = []
        for contour in contours[:MAX_CANDIDATES]:
            rect = cv2.minAreaRect(contour)
            if min(rect[1]) < MIN_SIDE_PX:
                continue
            score = box_score(prob, cv2.boxPoints(rect))
            if score < self.settings.ppocr_box_score:
                continue
            grown = unclip(rect)
            if min(grown[1]) < MIN_SIDE_PX + 2:
                continue
            points = cv2.boxPoints(grown) * np.array([sx, sy], np.float32)
            x1, y1 = np.floor(points.min(axis=0)).astype(int)
            x2, y2 = np.ceil(points.max(axis=0)).astype(int)
            box = (max(0, int(x1)), max(0, int(y1)), min(width, int(x2)), min(height, int(y2)))
            if box[3] - box[1] < self.settings.min_box_height or box[2] <= box[0]:
                continue
            line_height = min(grown[1]) * (sx + sy) / 2  # the line's own height, also for a tilted line
            out.append(Detection(box, score, text_height=max(1.0, float(line_height))))
        return out


def box_score(prob: npt.NDArray[np.float32], points: npt.NDArray[np.float32]) -> float:
    """Mean probability inside a rotated rectangle (DB's "fast" score), over its bounding window."""
    h, w = prob.shape
    x1, y1 = np.clip(np.floor(points.min(axis=0)).astype(int), 0, [w - 1, h - 1])
    x2, y2 = np.clip(np.ceil(points.max(axis=0)).astype(int), 0, [w - 1, h - 1])
    mask = np.zeros((y2 - y1 + 1, x2 - x1 + 1), np.uint8)
    cv2.fillPoly(mask, [np.round(points - [x1, y1]).astype(np.int32)], 1)
    return float(cv2.mean(prob[y1 : y2 + 1, x1 : x2 + 1], mask)[0])


def unclip(rect: tuple) -> tuple:
    """A kernel rectangle grown back to its text line: every side moves out by area x UNCLIP / perimeter."""
    (cx, cy), (rw, rh), angle = rect
    distance = rw * rh * UNCLIP / max(2 * (rw + rh), 1e-6)
    return (cx, cy), (rw + 2 * distance, rh + 2 * distance), angle
