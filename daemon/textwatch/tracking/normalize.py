"""Per-camera normalisation of read text, and the filters that ignore boxes or reads.

A camera that watches licence plates knows more about its text than Tesseract
does: the text has a format, some characters are easily confused (O/0, I/1,
S/5, B/8, Z/2), some strings are known in advance, and some regions (the
camera's own timestamp overlay) are never wanted. `FilterSettings` says so,
`normalize()` applies it to a text, `masked()` and `too_small()` to a box.

The confusable-character rule, exactly:
    1. Surrounding whitespace is stripped; an empty text is rejected.
    2. Without a `format`, the text is kept as it is (replacements need a
       format to know which way to go).
    3. With a `format`, a text that fully matches it is kept. Otherwise every
       character that belongs to a `replacements` pair may be swapped for its
       partner; the candidate with the fewest swaps that fully matches wins
       (ties: the leftmost swaps, then the earlier pair). The format itself
       says where digits or letters are expected, so no position rules are
       written twice. No matching candidate = rejected.
    4. A text (the fixed one when step 3 found one) within `max_edit_distance`
       of a `known` string becomes that known string, even if step 3 rejected
       it: a known string is trusted more than the format.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import lru_cache
from itertools import combinations, product

import cv2
import numpy as np
from rapidfuzz import process
from rapidfuzz.distance import Levenshtein

from textwatch.config import FilterSettings
from textwatch.detect.geometry import Box

MAX_CANDIDATES = 4096  # bound on the format search: 12 confusable characters, all combinations

def normalize(text: str, settings: FilterSettings) -> str | None:
    """The text as this camera should report it, or None when the format rejects it (rule in the module docstring)."""
    stripped = text.strip()
    if not stripped:
        return None
    fixed = fit_format(stripped, settings) if settings.format else stripped
    known = nearest_known(fixed if fixed is not None else stripped, settings)
    return known if known is not None else fixed


def fit_format(text: str, settings: FilterSettings) -> str | None:
    """The text with the fewest confusable swaps that fully matches the format, or None."""
    pattern = compiled(settings.format)
    for candidate in swap_candidates(text, settings.replacements):
        if pattern.fullmatch(candidate):
            return candidate
    return None


def swap_candidates(text: str, pairs: list[tuple[str, str]]) -> Iterator[str]:
    """The text itself, then its variants by increasing number of swaps, at most MAX_CANDIDATES in all."""
    options = [partners(char, pairs) for char in text]
    swappable = [index for index, alternatives in enumerate(options) if alternatives]
    produced = 0
    for count in range(len(swappable) + 1):
        for positions in combinations(swappable, count):
            for choice in product(*(options[index] for index in positions)):
                chars = list(text)
                for index, char in zip(positions, choice):
                    chars[index] = char
                yield "".join(chars)
                produced += 1
                if produced >= MAX_CANDIDATES:
                    return


def partners(char: str, pairs: list[tuple[str, str]]) -> list[str]:
    """What a character may be mistaken for, in the order of the pairs."""
    return [b if char == a else a for a, b in pairs if char in (a, b)]


def nearest_known(text: str, settings: FilterSettings) -> str | None:
    """The closest known string within max_edit_distance, or None."""
    if not settings.known:
        return None
    match = process.extractOne(
        text, settings.known, scorer=Levenshtein.distance, score_cutoff=settings.max_edit_distance
    )
    return None if match is None else match[0]


def masked(box: Box, settings: FilterSettings) -> bool:
    """Whether the box's centre lies inside (or on the edge of) one of the masks."""
    centre = ((box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0)
    return any(
        cv2.pointPolygonTest(np.asarray(polygon, dtype=np.float32), centre, False) >= 0
        for polygon in settings.masks
    )


def too_small(box: Box, settings: FilterSettings) -> bool:
    """Whether the box is lower than min_box_height."""
    return box[3] - box[1] < settings.min_box_height


@lru_cache(maxsize=64)
def compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)
