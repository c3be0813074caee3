"""`textwatch bench`: speed measured side by side in one run, printed as numbers.

Benchmarks, not timed unit tests: these shared machines are too noisy for
assertions on time, so the numbers are printed (JSON) and recorded in
docs/benchmarks.md together with the machine and the command.
"""

from __future__ import annotations

import os
import platform
import time

import numpy as np

from textwatch.config import OcrSettings
from textwatch.recognize import Recognizer
from textwatch.samples import SANS, SERIF, line_crop

WORDS = "invoice total amount station exit platform north sample text align camera street open".split()


def machine() -> dict[str, object]:
    """Where a number was measured: CPU model and cores visible to this process."""
    model = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            model = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": model, "cores": len(os.sched_getaffinity(0)), "python": platform.python_version()}


def line_texts(count: int, seed: int = 7) -> list[str]:
    rng = np.random.default_rng(seed)
    texts = []
    for _ in range(count):
        words = rng.choice(WORDS, size=rng.integers(1, 4)).tolist()
        if rng.random() < 0.5:
            words.append(str(rng.integers(10, 99999)))
        texts.append(" ".join(words).title() if rng.random() < 0.3 else " ".join(words))
    return texts


def time_engine(settings: OcrSettings, crops: list, rounds: int) -> tuple[float, list[str]]:
    """Crops per second over `rounds` passes, after one untimed warm-up read."""
    recognizer = Recognizer(settings)
    try:
        recognizer.read(crops[0])
        texts = []
        start = time.perf_counter()
        for _ in range(rounds):
            texts = [recognizer.read(crop).text for crop in crops]
        elapsed = time.perf_counter() - start
    finally:
        recognizer.close()
    return rounds * len(crops) / elapsed, texts


def bench_ocr(settings: OcrSettings, crops: int = 40, rounds: int = 3) -> dict[str, object]:
    """Both engines on the same rendered line crops; crops/s each and their ratio."""
    texts = line_texts(crops)
    images = [line_crop(t, height=28 + 6 * (i % 4), face=SANS if i % 2 else SERIF) for i, t in enumerate(texts)]
    fast, fast_texts = time_engine(settings.model_copy(update={"engine": "tesserocr"}), images, rounds)
    slow, slow_texts = time_engine(settings.model_copy(update={"engine": "pytesseract"}), images, 1)
    return {
        "benchmark": "ocr",
        "crops": crops,
        "tesserocr_crops_per_s": round(fast, 1),
        "pytesseract_crops_per_s": round(slow, 1),
        "tesserocr_ms_per_crop": round(1000 / fast, 2),
        "pytesseract_ms_per_crop": round(1000 / slow, 2),
        "ratio": round(fast / slow, 1),
        "tesserocr_exact": sum(a == b for a, b in zip(fast_texts, texts)),
        "pytesseract_exact": sum(a == b for a, b in zip(slow_texts, texts)),
        "machine": machine(),
    }
