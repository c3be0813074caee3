"""ocr.engine = "ppocr": PP-OCRv6's small recognizer from the rapidocr wheel, on real rendered crops."""

from __future__ import annotations

import numpy as np
import pytest

from textwatch.config import OcrSettings
from textwatch.errors import BackendUnavailable, ModelError
from textwatch.recognize import make_recognizer
from textwatch.recognize import ppocr
from textwatch.tools.samples import SANS, SERIF, line_crop

PLATE_CHARSET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
LINES = ["Invoice 4471 due 2026-12-01", "Total amount EUR 318.40", "Platform 7", "Meeting room B at 14:30"]


@pytest.fixture(scope="module")
def recognizer():
    rec = make_recognizer(OcrSettings(engine="ppocr"))
    yield rec
    rec.close()


def plate(text: str) -> np.ndarray:
    """A plate-like crop: dark text on a light plate inside a dark frame, with margin."""
    crop = line_crop(text, height=44, face=SANS)
    framed = np.full((crop.shape[0] + 12, crop.shape[1] + 12, 3), 30, np.uint8)
    framed[6:-6, 6:-6] = crop
    return framed


def test_reads_rendered_lines(recognizer) -> None:
    for i, text in enumerate(LINES):
        reading = recognizer.read(line_crop(text, height=24 + 8 * i, face=SERIF if i % 2 else SANS))
        assert (reading.status, reading.text) == ("text", text)
        assert 50 < reading.confidence <= 100


def test_reads_light_on_dark_and_plates(recognizer) -> None:
    assert recognizer.read(line_crop("EXIT 12", height=40, inverted=True)).text == "EXIT 12"
    assert recognizer.read(plate("KA 4521")).text.replace(" ", "") == "KA4521"


def test_a_charset_is_all_a_camera_can_read(recognizer) -> None:
    """The mask: a plate camera never emits a character outside its charset; a separator outside
    it is dropped rather than turned into a look-alike letter."""
    reading = recognizer.read(plate("AB-123-C"), charset=PLATE_CHARSET)
    assert reading.text == "AB123C"
    for text in LINES:
        read = recognizer.read(line_crop(text, height=32), charset=PLATE_CHARSET).text
        assert set(read) <= set(PLATE_CHARSET), read


def test_a_charset_maps_a_look_alike_to_what_the_camera_allows(recognizer) -> None:
    """Digits only: the letter O between digits is read as the digit 0."""
    assert recognizer.read(line_crop("2O48", height=40), charset="0123456789").text == "2048"


def test_a_crop_of_two_lines_is_split_and_both_are_read(recognizer) -> None:
    top, bottom = line_crop("Total 42.50", height=40), line_crop("Thank you!", height=30)
    width = max(top.shape[1], bottom.shape[1])
    crop = np.full((top.shape[0] + bottom.shape[0] + 10, width, 3), 255, np.uint8)
    crop[: top.shape[0], : top.shape[1]] = top
    crop[top.shape[0] + 10 :, : bottom.shape[1]] = bottom
    (top_y1, top_y2), (bottom_y1, bottom_y2) = ppocr.split_lines(crop)
    assert top_y2 <= bottom_y1 and top_y2 - top_y1 > bottom_y2 - bottom_y1
    assert recognizer.read(crop).text == "Total 42.50 Thank you!"


def test_one_line_is_not_split() -> None:
    for text in LINES:
        crop = line_crop(text, height=36)
        assert ppocr.split_lines(crop) == [(0, crop.shape[0])]


def test_a_batched_read_equals_the_single_reads(recognizer) -> None:
    """Each crop is padded to its own width bucket, never to its batch's widest crop, so a plate
    read beside a long line reads as it does alone."""
    crops = [line_crop(t, height=20 + 7 * i) for i, t in enumerate(LINES)] + [plate("7XYZ 842"), plate("B 12")]
    single = [recognizer.read(c) for c in crops]
    batched = recognizer.read_batch(crops[::-1])[::-1]
    assert [r.text for r in batched] == [r.text for r in single]
    assert np.allclose([r.confidence for r in batched], [r.confidence for r in single], atol=0.01)


def test_blank_and_tiny_crops_are_empty_and_failed(recognizer) -> None:
    assert recognizer.read(np.full((30, 120, 3), 200, np.uint8)).status == "empty"
    assert recognizer.read(np.zeros((1, 40, 3), np.uint8)).status == "failed"


def test_a_missing_model_file_is_a_config_error_naming_it(monkeypatch) -> None:
    monkeypatch.setattr(ppocr, "MODEL_FILE", "models/not-there.onnx")
    with pytest.raises(ModelError, match="not-there.onnx"):
        make_recognizer(OcrSettings(engine="ppocr"))


def test_cuda_asked_for_and_absent_is_a_loud_error() -> None:
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider")
    with pytest.raises(BackendUnavailable, match="CUDAExecutionProvider"):
        make_recognizer(OcrSettings(engine="ppocr", ppocr_device="cuda"))


def test_tesseract_takes_the_charset_as_its_whitelist() -> None:
    rec = make_recognizer(OcrSettings(engine="tesserocr"))
    try:
        reading = rec.read(line_crop("No 4471", height=40), charset="0123456789 ")
    finally:
        rec.close()
    assert set(reading.text) <= set("0123456789 ") and "4471" in reading.text


@pytest.mark.parametrize(("cores", "workers", "threads"), [(2, 0, 2), (8, 0, 1), (8, 2, 4), (2, 3, 1)])
def test_a_worker_shares_the_cores_out_over_the_local_workers(monkeypatch, cores: int, workers: int, threads: int) -> None:
    """ppocr_threads = 0 (the default): a lone worker on 2 cores reads with 2 threads (issue 16: a still
    scene's frame latency p50 134 -> 94 ms), a full pool with one each; an explicit count is kept."""
    import os

    from textwatch.config import Settings
    from textwatch.processes.ocr import reader_settings

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)))
    settings = Settings.model_validate({"pipeline": {"workers": workers}})
    assert reader_settings(settings).ppocr_threads == threads
    pinned = Settings.model_validate({"pipeline": {"workers": workers}, "ocr": {"ppocr_threads": 3}})
    assert reader_settings(pinned).ppocr_threads == 3
