"""The one-shot path: an image in, its text regions read, in reading order.

The streaming daemon reuses these pieces (detector, recognizer, crop) across
processes; this module joins them in one process for `textwatch image`,
`textwatch eval` and the benchmarks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from textwatch.config import Settings
from textwatch.detect.geometry import crop
from textwatch.detect.merge import reading_order
from textwatch.detect.runtime import Detection, make_detector
from textwatch.errors import InputError, InputMissing
from textwatch.recognize import Reading, make_recognizer

# We enforce image.max_pixels ourselves, from the header, with a clear error.
Image.MAX_IMAGE_PIXELS = None

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pbm", ".pgm", ".ppm"}


@dataclass(frozen=True)
class Region:
    """One detected text region and what Tesseract read in it."""

    detection: Detection
    reading: Reading

    def as_dict(self) -> dict[str, object]:
        return {
            "box": list(self.detection.box),
            "confidence": round(self.detection.confidence, 4),
            "status": self.reading.status,
            "text": self.reading.text,
            "ocr_confidence": round(self.reading.confidence, 2),
            **({"error": self.reading.error} if self.reading.error else {}),
        }


def load_image(path: Path, max_pixels: int) -> np.ndarray:
    """Read an image file as 8-bit BGR; refuse missing, empty, non-image and oversized files.

    The size is checked from the header (PIL reads it without decoding), so a
    decompression bomb is refused before any pixel is allocated. Transparent
    images are flattened onto white: some documents carry their text only in the
    alpha channel.
    """
    if not path.exists():
        raise InputMissing(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory")
    if not path.is_file():  # Regression: a FIFO named x.png made `textwatch image` wait for ever
        raise InputError(f"{path}: not a regular file")
    try:
        size = path.stat().st_size
        with Image.open(path) as probe:
            width, height = probe.size
    except PermissionError:
        raise InputMissing(f"{path}: permission denied") from None
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError, ValueError):
        kind = "empty file" if path.stat().st_size == 0 else "not an image file"
        raise InputError(f"{path}: {kind}") from None
    if width * height > max_pixels:
        raise InputError(f"{path}: {width}x{height} exceeds image.max_pixels={max_pixels}")
    image = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None or size == 0:
        raise InputError(f"{path}: not an image OpenCV can decode")
    return to_bgr8(image)


def to_bgr8(image: np.ndarray) -> np.ndarray:
    """Any decoded image (gray, BGRA, 16-bit) as 8-bit 3-channel BGR."""
    if image.dtype != np.uint8:
        image = cv2.convertScaleAbs(image, alpha=255.0 / max(1.0, float(image.max())))
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        alpha = image[:, :, 3:4].astype(np.float32) / 255.0
        white = np.full_like(image[:, :, :3], 255, dtype=np.float32)
        return (image[:, :, :3] * alpha + white * (1 - alpha)).astype(np.uint8)
    return image


def expand_inputs(paths: list[Path]) -> list[Path]:
    """Files as given, directories replaced by their image files in name order."""
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            out += sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            out.append(path)
    return out


class OneShot:
    """Detector plus recognizer in one process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.detector = make_detector(settings.detector)
        self.recognizer = make_recognizer(settings.ocr)

    def read(self, frame: np.ndarray) -> list[Region]:
        """All regions of a frame, read, in reading order (empty and failed ones included)."""
        detections = self.detector.detect(frame)
        order = reading_order([d.box for d in detections])
        return [
            Region(d, self.recognizer.read(crop(frame, d.box), d.line_height))
            for d in (detections[i] for i in order)
        ]

    def close(self) -> None:
        self.recognizer.close()


def text_lines(regions: list[Region]) -> list[str]:
    """The legible lines, in reading order: what `textwatch image` writes."""
    return [r.reading.text for r in regions if r.reading.status == "text"]


def annotate(frame: np.ndarray, regions: list[Region]) -> np.ndarray:
    """A copy of the frame with each box drawn and its text written above it."""
    out = frame.copy()
    colours = {"text": (0, 200, 0), "empty": (0, 200, 255), "failed": (0, 0, 255)}
    for region in regions:
        x1, y1, x2, y2 = region.detection.box
        colour = colours[region.reading.status]
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, 2)
        label = region.reading.text or region.reading.status
        cv2.putText(out, label[:60], (x1, max(12, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1, cv2.LINE_AA)
    return out
