"""Reading crops: one interface, one module per OCR engine, only the chosen one imported.

    reading.py    Reading (status text | empty | failed), shared by every engine
    tesseract.py  ocr.engine "tesserocr" (default) and "pytesseract": Tesseract's LSTM
    ppocr.py      ocr.engine "ppocr": PP-OCRv6's small line recognizer on ONNX Runtime

A `Recognizer` reads a crop (`read`) or several at once (`read_batch`, which
PP-OCR runs as one batched forward and Tesseract one by one), optionally
restricted to a charset (a camera's `filters.charset`: PP-OCR masks its
classes, Tesseract whitelists the characters). Engines are built lazily, once
each, by `Recognizers`, so a worker serving a plate camera on PP-OCR and a
screen camera on Tesseract loads both, and a worker that never sees PP-OCR
never imports ONNX Runtime.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from textwatch.config import OcrSettings
from textwatch.log import get_logger
from textwatch.recognize.reading import STALE, TIMEOUT, Reading, RecognizeTimeout, Word, classify
from textwatch.recognize.tesseract import check_languages, find_tessdata, make_engine, preprocess

__all__ = [
    "STALE", "TIMEOUT", "Reading", "RecognizeTimeout", "Recognizer", "Recognizers", "Word", "check_languages", "classify",
    "find_tessdata", "make_engine", "make_recognizer", "preprocess",
]


class Recognizer(Protocol):
    """What a worker needs of an engine."""

    def read(self, crop: np.ndarray, text_height: float | None = None, charset: str = "") -> Reading: ...

    def read_batch(
        self, crops: Sequence[np.ndarray], charset: str = "", text_heights: Sequence[float | None] | None = None
    ) -> list[Reading]: ...

    def close(self) -> None: ...


def make_recognizer(settings: OcrSettings, engine: str | None = None) -> Recognizer:
    """The recognizer of `engine` (default: ocr.engine); a TextwatchError when it cannot start."""
    chosen = engine or settings.engine
    if chosen == "ppocr":
        from textwatch.recognize.ppocr import PaddleRecognizer

        return PaddleRecognizer(settings)
    from textwatch.recognize.tesseract import TesseractRecognizer

    return TesseractRecognizer(settings.model_copy(update={"engine": chosen}))


class Recognizers:
    """One recognizer per engine, each built on first use and kept for the life of the process."""

    def __init__(self, settings: OcrSettings) -> None:
        self.settings = settings
        self.by_engine: dict[str, Recognizer] = {}

    def get(self, engine: str | None = None) -> Recognizer:
        chosen = engine or self.settings.engine
        if chosen not in self.by_engine:
            self.by_engine[chosen] = make_recognizer(self.settings, chosen)
            get_logger().info("ocr_engine_loaded", engine=chosen)
        return self.by_engine[chosen]

    def close(self) -> None:
        for recognizer in self.by_engine.values():
            recognizer.close()
        self.by_engine.clear()
