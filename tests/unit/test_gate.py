"""The change gate's pieces (detect/gate.py) without a network: what counts as change, which views
are chosen, its config and its stats on the wire. The gate with the shipped detector, on clips, is in
process/test_gate_detector.py."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from textwatch.config import GateSettings, Settings, describe_validation_error
from textwatch.detect.gate import Decision, GateCounters, changed_pixels, choose_views, gate_image, with_refresh
from textwatch.tools.samples import document_window, line_crop
from textwatch.wire import DetectStats, decode_published, encode_published, stats_from_dict

THRESHOLD = GateSettings().threshold
LEAST = round(GateSettings().min_area * 0.25**2)  # gate pixels of min_area at 1280 -> 320 px


def window() -> np.ndarray:
    image, _ = document_window(1280, 720)
    return image


def encoded(frames: list[np.ndarray], path) -> list[np.ndarray]:
    """The frames after an MP4 encode and decode: compression artefacts and flicker included."""
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (width, height))
    for frame in frames:
        writer.write(frame)
    writer.release()
    capture = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, frame = capture.read()
        if not ok:
            return out
        out.append(frame)


def worst_change(frames: list[np.ndarray]) -> int:
    """The most changed gate pixels of any frame against the first (as the gate compares a still view)."""
    reference = gate_image(frames[0])
    return max(changed_pixels(gate_image(frame), reference, THRESHOLD) for frame in frames[1:])


def test_sensor_noise_and_compression_flicker_are_not_change(tmp_path) -> None:
    rng = np.random.default_rng(0)
    base = window().astype(np.float32)
    noisy = [np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8) for _ in range(20)]
    assert worst_change(encoded(noisy, tmp_path / "noise.mp4")) < LEAST


def test_slow_lighting_changes_are_not_change(tmp_path) -> None:
    """A brightness ramp (+40 grey levels) and a 20 % gain drift over 40 frames, with sensor noise."""
    rng = np.random.default_rng(1)
    base = window().astype(np.float32) * 0.8
    ramp = [np.clip(base + n + rng.normal(0, 4, base.shape), 0, 255).astype(np.uint8) for n in range(40)]
    gain = [np.clip(base * (1 + 0.005 * n) + rng.normal(0, 4, base.shape), 0, 255).astype(np.uint8) for n in range(40)]
    assert worst_change(encoded(ramp, tmp_path / "ramp.mp4")) < LEAST
    assert worst_change(encoded(gain, tmp_path / "gain.mp4")) < LEAST


def test_a_new_word_is_change(tmp_path) -> None:
    """One short word, 20 px high, appearing on the window: well above min_area."""
    before = window()
    after = before.copy()
    word = line_crop("EXIT", height=20)
    after[600 : 600 + word.shape[0], 1000 : 1000 + word.shape[1]] = word
    frames = encoded([before, before, after], tmp_path / "word.mp4")
    assert changed_pixels(gate_image(frames[2]), gate_image(frames[0]), THRESHOLD) >= LEAST


def test_unchanged_views_carry_everything() -> None:
    assert choose_views([False] * 7) == Decision((), "unchanged")


def test_one_changed_tile_is_detected_with_the_whole_frame_view() -> None:
    assert choose_views([True, False, False, False, False, True, False]) == Decision((0, 5), "changed")


def test_more_than_half_the_tiles_changed_is_a_full_detect() -> None:
    decision = choose_views([True, True, True, True, True, False, False])
    assert decision.views == tuple(range(7)) and decision.full


def test_a_frame_level_gate_detects_its_one_view() -> None:
    """ppocr (no tiles): the whole frame is the one view."""
    assert choose_views([True]) == Decision((0,), "changed")


def test_counters_split_detected_and_carried_frames_and_views() -> None:
    counters = GateCounters()
    counters.frame(Decision(tuple(range(7)), "first"), 7)
    counters.frame(Decision((), "unchanged"), 7)
    counters.frame(Decision((0, 3), "changed"), 7)
    counters.frame(Decision((4,), "refresh", 4), 7)
    assert counters.as_dict() == {
        "frames_detected": 3, "frames_carried": 1, "frames_full": 1, "views_detected": 10, "views_carried": 18,
        "views_refreshed": 1, "roi_empty": 0,
    }


def test_due_views_are_refreshed_one_per_frame_stalest_first() -> None:
    """Issue 16: the periodic detect is rolled over frames, not one 7-view detect in one frame (p99 679 ms)."""
    detected = [0.0, 0.0, 3.0, 0.5, 0.0, 4.0, 4.0]
    nothing = with_refresh(Decision((), "unchanged"), detected, 5.2, 5.0)
    assert nothing == Decision((0,), "refresh", 0)
    changed = with_refresh(Decision((0, 5), "changed"), detected, 5.2, 5.0)
    assert changed == Decision((0, 1, 5), "changed", 1)  # view 0 is detected anyway: the next stalest is added
    assert with_refresh(Decision((), "unchanged"), [1.0] * 7, 5.2, 5.0) == Decision((), "unchanged")


@pytest.mark.parametrize(
    ("roi", "message"),
    [
        ([0, 0, 10], "must be [x1, y1, x2, y2] or []"),
        ([10, 0, 5, 20], "needs 0 <= x1 < x2 and 0 <= y1 < y2"),
        ([-1, 0, 5, 20], "needs 0 <= x1 < x2 and 0 <= y1 < y2"),
    ],
)
def test_a_bad_roi_is_one_line_naming_its_key(roi: list[int], message: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as error:
        Settings.model_validate({"cameras": [{"id": "door", "gate": {"roi": roi}}]})
    line = describe_validation_error(error.value)
    assert "cameras.0.gate.roi" in line and message in line and "\n" not in line


def test_gate_counters_travel_in_detect_stats() -> None:
    stats = DetectStats(
        process="detect-0", ts=1.0, frames=10, batches=2, detect_ms_total=5.0, detect_ms_avg=2.5, crops_sent=0,
        crops_dropped={}, cameras={}, ocr_skipped={}, regions_ignored={},
        gate={"frames_detected": 2, "frames_carried": 8}, cpu_ms_total=40.5,
    )
    topic, body = decode_published(encode_published("stats", stats))
    parsed = stats_from_dict(body)
    assert isinstance(parsed, DetectStats)
    assert parsed.gate == {"frames_detected": 2, "frames_carried": 8} and parsed.cpu_ms_total == 40.5
    older = {k: v for k, v in body.items() if k not in ("gate", "cpu_ms_total")}
    assert stats_from_dict(older).gate == {}  # a detect process from before the gate is still valid
