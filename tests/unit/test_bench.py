"""What `textwatch bench` computes from its measurements: the OCR engines' split by crop length,
and `bench pipeline`'s comparison of the scheduling modes on recorded message lists.

The timings themselves are benchmarks (printed, recorded in docs/benchmarks.md),
not tests; what is tested here is that the reports add up and read the right messages.
The real OCR run is in process/test_bench_ocr.py.
"""

from __future__ import annotations

import math

from textwatch.tools.bench import by_length, compare_runs, engine_ratio, tracked_texts


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


def test_by_length_splits_the_ratio_by_characters_per_crop() -> None:
    texts = ["exit", "north 12", "camera street", "invoice total 14164"]
    fast = [0.002, 0.004, 0.006, 0.010]
    slow = [0.100, 0.100, 0.106, 0.110]
    rows = by_length(texts, fast, slow)
    assert [row["chars"] for row in rows] == ["1-8", "9-16", "17+"]
    assert [row["crops"] for row in rows] == [2, 1, 1]
    assert rows[0]["tesserocr_ms_per_crop"] == 3.0 and rows[0]["ratio"] == 33.3
    assert rows[2]["ratio"] == 11.0
    assert engine_ratio(fast, slow) == round(0.416 / 0.022, 1)


def test_compare_gating_reports_ratios_latencies_and_text_differences() -> None:
    def run(fps: float, ms: float, cpu: float, p50: float, texts: list[str]) -> dict:
        return {"scheduling": True, "frames_per_s": fps, "detect_ms_per_frame": ms, "detect_cpu_ms_per_frame": cpu,
                "frame_latency_ms": {"p50": p50, "p99": 2 * p50}, "consolidated_text": texts}

    from textwatch.tools.bench import compare_gating

    result = compare_gating(run(10.0, 10.0, 20.0, 100.0, ["A", "B"]), run(5.0, 200.0, 400.0, 300.0, ["A", "B"]))
    assert result["frames_per_s_on_to_off"] == 2.0
    assert result["detect_ms_per_frame_off_to_on"] == 20.0 and result["detect_cpu_per_frame_off_to_on"] == 20.0
    assert result["frame_latency_p50_on_off"] == [100.0, 300.0] and result["same_consolidated_text"] is True
    assert compare_gating(run(1, 1, 1, 1, ["A"]), run(1, 1, 1, 1, ["B"]))["only_without_gating"] == ["B"]
