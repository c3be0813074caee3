"""`textwatch bench pipeline`'s comparison of the scheduling modes, on recorded message lists.

The daemon runs themselves are benchmarks (printed, recorded in docs/benchmarks.md),
not tests; what is tested here is that the comparison reads the right messages.
"""

from __future__ import annotations

import math

from textwatch.bench import compare_runs, tracked_texts


def event(track: int, kind: str, text: str, t: float = 0.0) -> tuple[float, str, dict]:
    return (t, "track.bench", {"track": track, "event": kind, "text": text})


def test_tracked_texts_take_each_tracks_latest_text_including_the_warmup() -> None:
    """Regression: the bench kept only the measured window, so a static scene's tracks, settled during the
    warm-up, had no text at all."""
    messages = [
        event(1, "appeared", "", -math.inf),
        event(1, "changed", "Tota1", -3.0),
        event(1, "changed", "Total", -2.0),
        event(2, "appeared", "", -2.0),
        event(2, "changed", "Invoice", 1.0),
        event(3, "appeared", "", 2.0),  # never read: no text
        (1.5, "text.bench", {"text": "Total", "status": "text"}),
    ]
    assert tracked_texts(messages) == ["Invoice", "Total"]


def test_compare_runs_reports_the_per_frame_ratio_and_text_differences() -> None:
    on = {"ocr_calls_per_s": 5.0, "ocr_calls_per_frame": 1.2, "consolidated_text": ["A", "B", "C"]}
    off = {"ocr_calls_per_s": 50.0, "ocr_calls_per_frame": 12.0, "consolidated_text": ["A", "B", "C", "C"]}
    result = compare_runs(on, off)
    assert result["ocr_calls_ratio_off_to_on"] == 10.0
    assert result["ocr_calls_per_frame_ratio_off_to_on"] == 10.0
    assert result["same_consolidated_text"] is False
    assert result["only_without_scheduling"] == ["C"] and result["only_with_scheduling"] == []
    assert compare_runs(on, on)["same_consolidated_text"] is True
