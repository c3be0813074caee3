"""What reading a crop gives, whatever the engine: a status, the text, a confidence.

A reading has a status: "text" (something legible), "empty" (the engine ran
and found nothing worth keeping) or "failed" (the engine raised, or gave up at
ocr.timeout_ms with error TIMEOUT). The three are never conflated: an empty
string is not an error, and an error is not "".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

Status = Literal["text", "empty", "failed"]
_SPACES = re.compile(r"\s+")
_ALNUM = re.compile(r"[^\W_]", re.UNICODE)
BLANK_STD = 3.0  # grey-level standard deviation below which a crop is blank
TIMEOUT = "timeout"  # the error of a reading abandoned at ocr.timeout_ms
STALE = "stale"  # the error of a crop a worker skipped as older than pipeline.crop_max_age_s


class RecognizeTimeout(Exception):
    """The engine did not finish one crop within ocr.timeout_ms."""


@dataclass(frozen=True)
class Word:
    text: str
    confidence: float  # 0..100, the engine's own (Tesseract's word confidence, PP-OCR's mean character probability)


@dataclass(frozen=True)
class Reading:
    """The result of reading one crop."""

    status: Status
    text: str = ""
    confidence: float = 0.0  # mean word confidence, 0..100
    words: tuple[Word, ...] = field(default_factory=tuple)
    error: str | None = None


def better(first: Reading, second: Reading) -> Reading:
    """The fallback read wins when the first found nothing, or when it is more confident."""
    if second.status != "text":
        return first
    if first.status != "text" or second.confidence > first.confidence:
        return second
    return first


MAX_READ_PIXELS = 2_000_000  # a crop larger than this is scaled down before any engine reads it


def bounded(crop: np.ndarray, text_height: float | None) -> tuple[np.ndarray, float | None]:
    """The crop scaled down to at most MAX_READ_PIXELS (aspect kept), with its text height scaled
    alike. Regression (issue 22): a legal 4096x4096 crop kept a worker in Tesseract for more
    than 90 s at 2.8 GB, past ocr.timeout_ms; no line of text needs that many pixels."""
    h, w = crop.shape[:2]
    if h * w <= MAX_READ_PIXELS:
        return crop, text_height
    import cv2

    scale = (MAX_READ_PIXELS / (h * w)) ** 0.5
    size = (max(1, int(w * scale)), max(1, int(h * scale)))
    return cv2.resize(crop, size, interpolation=cv2.INTER_AREA), (text_height * scale if text_height else text_height)


def is_blank(crop: np.ndarray) -> bool:
    """A crop without contrast holds no text; Tesseract would invent some ("ee") on it."""
    return float(crop.std()) < BLANK_STD


def clean_text(words: list[Word]) -> str:
    """Join words, collapse newlines and runs of spaces (as the seed did)."""
    return _SPACES.sub(" ", " ".join(w.text for w in words)).strip()


def is_noise(text: str) -> bool:
    """Pure-noise readings: nothing alphanumeric, or a lone character."""
    alnum = len(_ALNUM.findall(text))
    return alnum == 0 or (len(text) <= 1)


def classify(words: list[Word], min_confidence: float) -> Reading:
    """Clean the words into a Reading: "text" when legible, else "empty"."""
    words = [w for w in words if w.text.strip()]
    text = clean_text(words)
    confidence = float(np.mean([w.confidence for w in words])) if words else 0.0
    if not text or is_noise(text) or confidence < min_confidence:
        return Reading("empty", text="", confidence=confidence, words=tuple(words))
    return Reading("text", text=text, confidence=confidence, words=tuple(words))
