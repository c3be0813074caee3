"""Tracking of text boxes across frames and the OCR scheduler, on synthetic boxes and rendered text."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from textwatch.detect.runtime import Detection
from textwatch.tools.samples import line_crop
from textwatch.tracking.tracker import (
    GoneTrack,
    Tracker,
    TrackingSettings,
    TrackUpdate,
    greedy_pairs,
    iou,
)

FPS = 10.0
BLANK = np.full((480, 640, 3), 255, np.uint8)


def det(x1: float, y1: float, width: int = 100, height: int = 30) -> Detection:
    return Detection((int(x1), int(y1), int(x1) + width, int(y1) + height), 0.9)


def run(tracker: Tracker, frames: list[list[Detection]], frame: np.ndarray = BLANK) -> list[TrackUpdate]:
    return [tracker.update(seq, seq / FPS, detections, frame) for seq, detections in enumerate(frames)]


def scene(text: str, box_xy: tuple[int, int] = (100, 200), noise: np.random.Generator | None = None) -> tuple[np.ndarray, Detection]:
    """A frame with one rendered line at box_xy (optionally with sensor noise) and its detection."""
    line = line_crop(text)
    frame = np.full((480, 640, 3), 200, np.uint8)
    x, y = box_xy
    frame[y : y + line.shape[0], x : x + line.shape[1]] = line
    if noise is not None:
        frame = np.clip(frame + noise.normal(0.0, 3.0, frame.shape), 0, 255).astype(np.uint8)
    return frame, Detection((x, y, x + line.shape[1], y + line.shape[0]), 0.9)


def test_linearly_moving_box_keeps_one_id() -> None:
    updates = run(Tracker(TrackingSettings()), [[det(10 + 6 * seq, 100 + 2 * seq)] for seq in range(40)])
    assert {update.tracks for update in updates} == {(1,)}
    assert [update.appeared for update in updates if update.appeared] == [(1,)]
    assert not any(update.gone for update in updates)


def test_motion_prediction_follows_a_box_that_moved_past_its_last_iou() -> None:
    """70 px a frame on a 100 px box: IoU with the last box is 0.18, with the predicted box above 0.6."""
    assert iou(np.array([0, 0, 100, 30.0]), np.array([70, 0, 170, 30.0])) < TrackingSettings().iou_match
    positions = [0, 50, 120, 190, 260, 330, 400]  # starts at 50 px a frame (IoU 0.33), then 70
    updates = run(Tracker(TrackingSettings()), [[det(x, 100)] for x in positions])
    assert {update.tracks for update in updates} == {(1,)}


def test_missing_box_keeps_its_id_then_is_gone_after_max_missed() -> None:
    settings = TrackingSettings(max_missed=5)
    present = set(range(10)) | set(range(13, 20))  # missing for 3 frames, then gone from seq 20
    frames = [[det(50 + 2 * seq, 100)] if seq in present else [] for seq in range(30)]
    updates = run(Tracker(settings), frames)
    assert {update.tracks for update in updates if update.tracks} == {(1,)}
    gone = [(update.seq, g) for update in updates for g in update.gone]
    assert gone == [(25, GoneTrack(1, 0, 0.0, 19, 1.9, "missed"))]


def test_track_not_seen_for_max_age_is_gone_and_a_new_id_starts() -> None:
    tracker = Tracker(TrackingSettings(max_age_s=1.0, max_missed=100))
    tracker.update(0, 0.0, [det(50, 100)], BLANK)
    later = tracker.update(1, 5.0, [det(50, 100)], BLANK)
    assert later.gone == (GoneTrack(1, 0, 0.0, 0, 0.0, "aged"),)
    assert later.tracks == (2,) and later.appeared == (2,)


def test_crossing_boxes_keep_distinct_ids() -> None:
    """A moves right, B left, 40 px a frame, one line apart: by its last box each would take the other's."""
    frames = []
    for seq in range(14):
        a, b = det(20 + 40 * seq, 100), det(540 - 40 * seq, 110)
        frames.append([a, b] if seq % 2 == 0 else [b, a])  # detection order must not matter
    updates = run(Tracker(TrackingSettings()), frames)
    for seq, update in enumerate(updates):
        expected = (1, 2) if seq % 2 == 0 else (2, 1)
        assert update.tracks == expected, f"seq {seq}"


def test_nearby_jittering_lines_keep_distinct_ids() -> None:
    rng = np.random.default_rng(1)
    frames = [
        [det(100 + rng.integers(-2, 3), 100 + rng.integers(-2, 3)), det(100 + rng.integers(-2, 3), 132 + rng.integers(-2, 3))]
        for _ in range(50)
    ]
    updates = run(Tracker(TrackingSettings()), frames)
    assert {update.tracks for update in updates} == {(1, 2)}


def test_appeared_and_gone_exactly_once_per_region_at_the_right_seq() -> None:
    spans = {"top": (0, 20), "middle": (5, 40), "bottom": (30, 50)}  # seq ranges [start, stop)
    rows = {"top": 50, "middle": 200, "bottom": 350}
    frames = [
        [det(100 + seq, rows[name]) for name, (start, stop) in spans.items() if start <= seq < stop]
        for seq in range(60)
    ]
    updates = run(Tracker(TrackingSettings(max_missed=3)), frames)
    appeared = [(update.seq, track) for update in updates for track in update.appeared]
    gone = [(update.seq, g.id, g.first_seq, g.last_seq) for update in updates for g in update.gone]
    assert appeared == [(0, 1), (5, 2), (30, 3)]
    assert gone == [(20 + 3, 1, 0, 19), (40 + 3, 2, 5, 39), (50 + 3, 3, 30, 49)]


def test_finish_ends_every_track() -> None:
    tracker = Tracker(TrackingSettings())
    tracker.update(0, 0.0, [det(10, 10), det(10, 300)], BLANK)
    assert [(g.id, g.reason) for g in tracker.finish()] == [(1, "finished"), (2, "finished")]
    assert tracker.update(1, 0.1, [det(10, 10)], BLANK).appeared == (3,)


def test_static_scene_is_read_ten_times_less_often() -> None:
    """100 frames at 10 fps of the same noisy, jittering line with refresh_s=2: read at 0, 2, 4, 6, 8 s."""
    rng = np.random.default_rng(7)
    tracker = Tracker(TrackingSettings(refresh_s=2.0))
    reasons = []
    for seq in range(100):
        frame, detection = scene("AB-12-CD", (100 + int(rng.integers(-1, 2)), 200 + int(rng.integers(-1, 2))), rng)
        reasons.append(tracker.update(seq, seq / FPS, [detection], frame).ocr[0])
    sent = [(seq, reason) for seq, reason in enumerate(reasons) if reason is not None]
    assert sent == [(0, "appeared"), (20, "refresh"), (40, "refresh"), (60, "refresh"), (80, "refresh")]
    assert len(sent) * 10 <= 100
    assert tracker.scheduler.skipped == {"unchanged": 95}
    assert sum(tracker.scheduler.sent.values()) == 5


def test_tracks_that_appeared_together_are_refreshed_in_different_frames() -> None:
    """Issue 16: 12 lines of a still screen appeared in one frame and, refresh_s later, were all read in one
    frame; that frame waited for 12 OCR reads (p50 287-521 ms). Refreshes now spread: at 10 fps and
    refresh_s = 3, 12 tracks need at most ceil(12 x 0.1 / 3) = 1 a frame, and every track is still
    refreshed about every refresh_s."""
    frame = np.full((720, 1280, 3), 255, np.uint8)
    detections = []
    for row in range(12):
        crop = line_crop(f"Line {row} of the still screen", height=24)
        y = 20 + 55 * row
        frame[y : y + crop.shape[0], 40 : 40 + crop.shape[1]] = crop
        detections.append(Detection((40, y, 40 + crop.shape[1], y + crop.shape[0]), 0.9))
    tracker = Tracker(TrackingSettings(refresh_s=3.0))
    reads: dict[int, list[int]] = {}
    for seq in range(150):  # 15 s
        update = tracker.update(seq, seq / FPS, detections, frame)
        for track, reason in zip(update.tracks, update.ocr):
            if reason is not None:
                reads.setdefault(seq, []).append(track)
    assert len(reads[0]) == 12  # appeared: all read at once
    assert all(len(tracks) == 1 for seq, tracks in reads.items() if seq > 0), reads
    per_track: dict[int, list[int]] = {}
    for seq, tracks in sorted(reads.items()):
        for track in tracks:
            per_track.setdefault(track, []).append(seq)
    gaps = [b - a for seqs in per_track.values() for a, b in zip(seqs, seqs[1:])]
    assert len(per_track) == 12 and min(len(seqs) for seqs in per_track.values()) >= 4, per_track
    assert max(gaps) <= 30 + 12, gaps  # refresh_s, plus at most one frame per track waiting its turn
    assert tracker.scheduler.skipped["refresh_deferred"] > 0


def test_changed_text_is_read_at_once() -> None:
    tracker = Tracker(TrackingSettings(refresh_s=10.0))
    texts = ["AB-12-CD"] * 10 + ["XY-98-ZW"] * 10
    reasons = []
    for seq, text in enumerate(texts):
        frame, detection = scene(text)
        update = tracker.update(seq, seq / FPS, [detection], frame)
        assert update.tracks == (1,)
        reasons.append(update.ocr[0])
    assert [(seq, r) for seq, r in enumerate(reasons) if r] == [(0, "appeared"), (10, "changed")]


def test_one_changed_character_in_a_long_line_is_read_at_the_refresh() -> None:
    """Pins the limit the track module documents: a clock's last digit is below the signature's noise floor."""
    tracker = Tracker(TrackingSettings(refresh_s=2.0))
    texts = ["Meeting room B at 14:30"] * 10 + ["Meeting room B at 14:31"] * 20
    reasons = [tracker.update(seq, seq / FPS, [d], f).ocr[0] for seq, (f, d) in enumerate(scene(t) for t in texts)]
    assert [(seq, r) for seq, r in enumerate(reasons) if r] == [(0, "appeared"), (20, "refresh")]


def test_without_scheduling_every_crop_is_read_and_tracks_stay() -> None:
    """schedule=false (the benchmark's baseline): every frame's crop goes to OCR, ids and events as usual."""
    tracker = Tracker(TrackingSettings(schedule=False))
    updates = [tracker.update(seq, seq / FPS, [d], f) for seq, (f, d) in enumerate(scene("AB-12-CD") for _ in range(30))]
    assert all(update.ocr == ("every_frame",) and update.tracks == (1,) for update in updates)
    assert [update.appeared for update in updates if update.appeared] == [(1,)]
    assert not tracker.scheduler.sent and not tracker.scheduler.skipped


def test_larger_or_sharper_view_is_read_again() -> None:
    tracker = Tracker(TrackingSettings(refresh_s=10.0))
    small = line_crop("AB-12-CD", height=30)
    large = line_crop("AB-12-CD", height=40)  # 1.78x the area
    blurred = cv2.GaussianBlur(large, (0, 0), 2.0)
    reasons = []
    for seq, crop in enumerate([small, small, large, large, blurred]):
        frame = np.full((480, 640, 3), 255, np.uint8)
        frame[100 : 100 + crop.shape[0], 50 : 50 + crop.shape[1]] = crop
        detection = Detection((50, 100, 50 + crop.shape[1], 100 + crop.shape[0]), 0.9)
        reasons.append(tracker.update(seq, seq / FPS, [detection], frame).ocr[0])
    assert reasons == ["appeared", None, "better", None, None]

    sharp_after_blur = Tracker(TrackingSettings(refresh_s=10.0))
    frame_blurred, frame_sharp = BLANK.copy(), BLANK.copy()
    frame_blurred[100 : 100 + large.shape[0], 50 : 50 + large.shape[1]] = blurred
    frame_sharp[100 : 100 + large.shape[0], 50 : 50 + large.shape[1]] = large
    detection = Detection((50, 100, 50 + large.shape[1], 100 + large.shape[0]), 0.9)
    first = sharp_after_blur.update(0, 0.0, [detection], frame_blurred).ocr[0]
    second = sharp_after_blur.update(1, 0.1, [detection], frame_sharp).ocr[0]
    assert (first, second) == ("appeared", "better")


def test_box_outside_the_frame_is_skipped_as_empty() -> None:
    tracker = Tracker(TrackingSettings())
    update = tracker.update(0, 0.0, [Detection((700, 10, 800, 40), 0.9)], BLANK)
    assert update.tracks == (1,) and update.ocr == (None,)
    assert tracker.scheduler.skipped == {"empty": 1}


def test_greedy_assignment_takes_the_best_overlap_first() -> None:
    overlap = np.array([[0.9, 0.8], [0.85, 0.0]])
    assert greedy_pairs(overlap) == [(0, 0)]
    assert greedy_pairs(np.array([[0.5, 0.6], [0.4, 0.0], [0.0, 0.7]])) == [(2, 1), (0, 0)]


def test_settings_reject_unknown_keys_and_bad_bounds() -> None:
    with pytest.raises(ValidationError):
        TrackingSettings(iou_match=0.0)
    with pytest.raises(ValidationError):
        TrackingSettings.model_validate({"refresh": 1.0})
