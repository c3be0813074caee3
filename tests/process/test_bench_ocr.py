"""`textwatch bench ocr` on a short real run: real Tesseract through both engines (pytesseract
starts a tesseract process per crop). What its report computes is in unit/test_bench.py."""

from __future__ import annotations

from textwatch.config import OcrSettings
from textwatch.tools.bench import bench_ocr


def test_bench_ocr_reads_every_crop_with_both_engines_and_reports_the_start_up_cost() -> None:
    """A short real run (real Tesseract, both engines): the report's parts add up; no timing is asserted."""
    result = bench_ocr(OcrSettings(), crops=6, rounds=1)
    assert result["tesserocr_exact"] == result["pytesseract_exact"] == 6
    assert sum(row["crops"] for row in result["by_length"]) == 6
    assert result["pytesseract_startup_ms"] > 0 and result["ratio"] > 0
    engines = {row["engine"]: row for row in result["engines"]}
    assert set(engines) == {"tesserocr", "pytesseract", "ppocr", "ppocr batched"}
    assert engines["ppocr"]["exact"] == 6 and engines["ppocr"]["ms_per_crop"] > 0
