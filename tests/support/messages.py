"""Valid bus messages for tests, built with the wire module: crop headers, crops showing text, text results."""

from __future__ import annotations

import time

from textwatch import wire
from textwatch.tools.samples import line_crop


def header(camera: str = "cam", seq: int = 0, region: int = 0, regions: int = 1, shape=(40, 120, 3)) -> wire.CropHeader:
    """The header of a crop of `shape` (h, w, c) cut from a frame at (10, 20)."""
    return wire.CropHeader(
        camera=camera, seq=seq, ts=time.time(), region=region, regions=regions,
        box=(10, 20, 10 + shape[1], 20 + shape[0]), confidence=0.9, text_height=shape[0] * 0.62, shape=tuple(shape),
    )


def crop_message(text: str, camera: str, seq: int = 0, region: int = 0, regions: int = 1) -> list:
    """The frames detect would PUSH for a crop showing `text` as one rendered line."""
    pixels = line_crop(text)
    return wire.encode_crop(header(camera, seq, region, regions, pixels.shape), pixels)


def text_result(camera: str = "cam", seq: int = 0, region: int = 0, regions: int = 1, text: str = "x", ts: float = 100.0) -> wire.TextResult:
    """A worker's result for one region of a frame."""
    return wire.TextResult(
        camera=camera, seq=seq, ts=ts, region=region, regions=regions, box=(0, 0, 1, 1), confidence=0.5,
        status="text", text=text, ocr_confidence=90.0, worker="w", latency_ms=1.0,
    )
