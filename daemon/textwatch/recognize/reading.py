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
