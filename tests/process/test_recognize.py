"""The recognizer with the real Tesseract: rendered lines, real scanned lines, status kinds."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from support.paths import shared_path
from textwatch.config import OcrSettings
from textwatch.errors import BackendUnavailable
from textwatch.recognize import Recognizer, Word, classify, make_recognizer, preprocess
from textwatch.recognize.tesseract import BORDER, glyph_height, is_light_on_dark
from textwatch.tools.samples import SERIF, line_crop


@pytest.fixture(scope="module", params=["tesserocr", "pytesseract"])
def recognizer(request):
    rec = make_recognizer(OcrSettings(engine=request.param))
    yield rec
    rec.close()


@pytest.mark.parametrize("text", ["Sample Text", "Invoice 4471 due 2026-12-01", "EXIT"])
def test_reads_rendered_lines(recognizer: Recognizer, text: str) -> None:
    reading = recognizer.read(line_crop(text, height=40))
    assert reading.status == "text"
    assert reading.text == text
    assert reading.words and all(0 <= w.confidence <= 100 for w in reading.words)
    assert reading.confidence > 50


@pytest.mark.parametrize("height", [18, 24, 120])
def test_small_and_large_text_is_rescaled(height: int) -> None:
    rec = make_recognizer(OcrSettings(engine="tesserocr"))
    try:
        assert rec.read(line_crop("Total amount 318", height=height, face=SERIF)).text == "Total amount 318"
    finally:
        rec.close()


def test_light_on_dark_is_inverted() -> None:
    crop = line_crop("Platform 9", height=40, inverted=True)
    settings = OcrSettings(engine="tesserocr")
    image = preprocess(crop, settings)
    assert not is_light_on_dark(cv2.threshold(image, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)[1])
    rec = make_recognizer(settings)
    try:
        assert rec.read(crop).text == "Platform 9"
    finally:
        rec.close()


def framed_plate(text: str) -> np.ndarray:
    """A plate as the detector cuts it: dark text on a light plate, the plate's dark frame around it,
    the characters about a third of the crop's height."""
    plate = line_crop(text, height=44)
    plate = cv2.copyMakeBorder(plate, 4, 4, 8, 8, cv2.BORDER_CONSTANT, value=(235, 235, 235))
    return cv2.copyMakeBorder(plate, 6, 6, 10, 10, cv2.BORDER_CONSTANT, value=(40, 40, 40))


def test_a_dark_frame_around_dark_on_light_text_does_not_invert_it() -> None:
    """Regression: inversion was judged on the crop's border, so a plate's dark frame turned its dark
    characters light and Tesseract read nothing (openalpr plates: recall 0 with every plate detected)."""
    crop = framed_plate("627 WKX")
    image = preprocess(crop, OcrSettings(engine="tesserocr"))
    inner = image[image.shape[0] // 2 - 5 : image.shape[0] // 2 + 5, image.shape[1] // 3 : 2 * image.shape[1] // 3]
    assert np.median(inner) > 127, "the plate's light background must stay light"
    rec = make_recognizer(OcrSettings(engine="tesserocr"))
    try:
        assert rec.read(crop).text.replace(" ", "") == "627WKX"
    finally:
        rec.close()


def test_text_height_is_measured_on_the_glyphs_not_the_box() -> None:
    """The characters of a framed plate are a fraction of the crop's height; scaling by the box under-scaled them."""
    crop = cv2.cvtColor(framed_plate("627 WKX"), cv2.COLOR_BGR2GRAY)
    capitals = cv2.cvtColor(line_crop("627 WKX", height=44), cv2.COLOR_BGR2GRAY)
    ink_rows = np.flatnonzero((capitals < 128).any(axis=1))
    measured = glyph_height(crop)
    assert measured is not None and abs(measured - (ink_rows[-1] - ink_rows[0] + 1)) <= 2
    assert measured < 0.5 * crop.shape[0]
    assert glyph_height(np.full((40, 200), 255, np.uint8)) is None


def test_blank_crop_is_empty_not_failed(recognizer: Recognizer) -> None:
    reading = recognizer.read(np.full((40, 200, 3), 255, np.uint8))
    assert reading.status == "empty" and reading.text == "" and reading.error is None


def test_degenerate_crop_is_failed_not_empty(recognizer: Recognizer) -> None:
    reading = recognizer.read(np.zeros((1, 50, 3), np.uint8))
    assert reading.status == "failed" and reading.error


def test_noise_is_dropped() -> None:
    assert classify([Word("~", 40.0), Word("|", 30.0)], 0.0).status == "empty"
    assert classify([Word("a", 90.0)], 0.0).status == "empty"
    assert classify([Word("ok", 90.0), Word("\n\n", 0.0), Word("go", 80.0)], 0.0).text == "ok go"
    assert classify([Word("ok", 20.0)], 50.0).status == "empty"


def test_missing_language_is_a_clear_error() -> None:
    with pytest.raises(BackendUnavailable, match="language data missing for xyz"):
        make_recognizer(OcrSettings(engine="tesserocr", languages="eng+xyz"))


def test_reads_real_receipt_lines() -> None:
    """Real scanned text: SROIE receipt lines cut by their ground-truth boxes (shared/eval)."""
    folder = shared_path("eval", "sroie_receipts")
    record = json.loads((folder / "manifest.jsonl").read_text().splitlines()[0])
    image = cv2.imread(str(folder / record["image"]))
    rec = make_recognizer(OcrSettings(engine="tesserocr"))
    good = total = 0
    try:
        for line in record["lines"][:15]:
            x1, y1, x2, y2 = line["box"]
            pad = max(2, (y2 - y1) // 5)
            crop = image[max(0, y1 - pad) : y2 + pad, max(0, x1 - pad) : x2 + pad]
            reading = rec.read(crop)
            total += 1
            good += reading.text.upper().replace(" ", "") == line["text"].upper().replace(" ", "")
    finally:
        rec.close()
    assert good >= total * 0.6, f"only {good}/{total} receipt lines read exactly"


def test_importing_the_cli_leaves_openmp_threads_alone() -> None:
    """Regression: recognize.py set OMP_THREAD_LIMIT=1 at import, and since the CLI imports
    it, `textwatch train` ran torch on one thread (half speed on 2 cores). The limit now
    applies only where an OCR engine starts."""
    import subprocess
    import sys

    code = (
        "import os, textwatch.cli; before = os.environ.get('OMP_THREAD_LIMIT');"
        "from textwatch.config import OcrSettings; from textwatch.recognize import make_engine;"
        "make_engine(OcrSettings(engine='tesserocr')); print(before, os.environ.get('OMP_THREAD_LIMIT'))"
    )
    env = {k: v for k, v in __import__("os").environ.items() if k != "OMP_THREAD_LIMIT"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.stdout.split() == ["None", "1"], out.stderr


def test_two_line_crop_falls_back_to_block_mode() -> None:
    """A detector box that holds two lines: psm 7 reads nothing useful, the psm 6 fallback
    reads both (measured on SROIE: word recall 0.29 -> 0.65 with the fallback)."""
    import numpy as np

    top, bottom = line_crop("TOTAL 12.50", height=40), line_crop("CASH 20.00", height=40)
    width = max(top.shape[1], bottom.shape[1])
    crop = np.full((80, width, 3), 255, np.uint8)
    crop[:40, : top.shape[1]], crop[40:, : bottom.shape[1]] = top, bottom
    with_fallback = make_recognizer(OcrSettings(engine="tesserocr"))
    without = make_recognizer(OcrSettings(engine="tesserocr", fallback_psm=0))
    try:
        assert with_fallback.read(crop, text_height=32).text == "TOTAL 12.50 CASH 20.00"
        assert without.read(crop, text_height=32).text != "TOTAL 12.50 CASH 20.00"
    finally:
        with_fallback.close()
        without.close()


def test_preprocess_never_scales_a_crop_past_the_read_bound() -> None:
    """Regression (issue 22): a 1400x1400 crop of 5 px text was scaled up 6x, to 8400x8400 (70 MP),
    and kept a worker in Tesseract for 24 s; the upscale now stops at MAX_READ_PIXELS."""
    from textwatch.recognize.reading import MAX_READ_PIXELS

    crop = np.random.default_rng(0).integers(0, 256, (1400, 1400), dtype=np.uint8)  # noise: no glyph height
    out = preprocess(crop, OcrSettings(), text_height=5.0)  # the detector's estimate asks for a 6x upscale
    h, w = out.shape[:2]
    assert (h - 2 * BORDER) * (w - 2 * BORDER) <= MAX_READ_PIXELS * 1.01, (h, w)
