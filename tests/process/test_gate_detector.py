"""Change-gated detection with the shipped detector: a still clip has each view detected once per full-detect period,
a change in one tile is detected in the next frame, the region of interest, and the same consolidated
texts with gating on and off on the bundled sample clip."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from support.models import needs_shipped_model
from support.paths import ROOT, shared_path
from textwatch.config import GateSettings, Settings
from textwatch.detect.gate import GatedDetector, GateFrame
from textwatch.detect.runtime import Detector
from textwatch.tools.bench import replay_clip
from textwatch.tools.samples import document_window, line_crop

SAMPLE = ROOT / "daemon" / "textwatch" / "data" / "sample.mp4"
FPS = 10.0


@pytest.fixture(scope="module")
def detector() -> Detector:
    needs_shipped_model()
    return Detector(Settings().resolve_paths(ROOT / "config").detector)


def still_clip(base: np.ndarray, path: Path, frames: int) -> list[np.ndarray]:
    """`base` as a camera would film it standing still: sensor noise, a slow brightness ramp, MP4 flicker."""
    rng = np.random.default_rng(0)
    height, width = base.shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (width, height))
    for index in range(frames):
        noisy = base.astype(np.float32) * 0.85 + 0.5 * index + rng.normal(0, 4, base.shape)
        writer.write(np.clip(noisy, 0, 255).astype(np.uint8))
    writer.release()
    capture = cv2.VideoCapture(str(path))
    out = []
    while (frame := capture.read())[0]:
        out.append(frame[1])
    return out


def real_frame() -> np.ndarray:
    """A 1280x720 frame of a real video (burned-in subtitles over footage), filmed still by still_clip()."""
    capture = cv2.VideoCapture(str(shared_path("eval", "videos", "vsr_test2_ru_subtitles_noGT.mp4")))
    for _ in range(100):
        ok, frame = capture.read()
    assert ok
    return frame


@pytest.mark.parametrize("scene", ["rendered window", "real camera frame"])
def test_a_still_clip_is_detected_once_per_full_detect_period(detector: Detector, tmp_path, scene: str) -> None:
    """40 frames (4 s) with noise, flicker and a brightness ramp, full_detect_s = 2: every view at the first
    frame, then each view once per 2 s, one view per frame (the rolled refresh), nothing counted as changed."""
    base = document_window(1280, 720)[0] if scene == "rendered window" else real_frame()
    frames = still_clip(base, tmp_path / "still.mp4", 40)
    gated = GatedDetector(detector, {"cam": GateSettings(full_detect_s=2.0)})
    views = len(detector.view_regions(1280, 720))
    per_frame = []
    for seq, image in enumerate(frames):
        before = gated.counters.counts["views_detected"]
        gated.detect_batch([GateFrame("cam", seq / FPS, image)])
        per_frame.append(gated.counters.counts["views_detected"] - before)
    counts = gated.counters.as_dict()
    assert counts["frames_full"] == 1 and per_frame[0] == views, counts  # the first frame only
    assert counts["views_detected"] == views + counts["views_refreshed"], counts  # no tile counted as changed
    assert counts["views_refreshed"] <= views * (len(frames) / FPS / 2.0), counts  # each view once per period
    assert counts["views_refreshed"] >= views, counts  # and at least once in 4 s: nothing is missed for long
    assert max(per_frame[1:]) == 1, per_frame  # never a whole detect in one frame after the first
    assert counts["frames_carried"] == len(frames) - counts["frames_detected"]


def test_a_change_in_one_tile_is_detected_in_the_next_frame(detector: Detector) -> None:
    window, _ = document_window(1280, 720)
    changed = window.copy()
    word = line_crop("PLATFORM 7", height=28)
    changed[640 : 640 + word.shape[0], 1080 : 1080 + word.shape[1]] = word  # bottom right: the last tile only
    gated = GatedDetector(detector, {"cam": GateSettings(full_detect_s=60.0)})
    first = gated.detect_batch([GateFrame("cam", 0.0, window)])[0]
    carried = gated.detect_batch([GateFrame("cam", 0.1, window)])[0]
    views_before = gated.counters.counts["views_detected"]
    after = gated.detect_batch([GateFrame("cam", 0.2, changed)])[0]
    assert carried == first
    regions = detector.view_regions(1280, 720)
    ran = gated.counters.counts["views_detected"] - views_before
    assert 2 <= ran < len(regions), gated.counters.as_dict()  # the whole view and the tile(s) holding the word
    new = [d for d in after if d.box[1] >= 630 and d.box[0] >= 1000]
    assert new, after
    assert {d.box for d in after if d.box[1] < 600} == {d.box for d in first if d.box[1] < 600}


def test_all_views_detected_and_merged_equal_detect_batch(detector: Detector) -> None:
    """The gate's path through the detector (detect_views + finish_views) is detect_batch's exactly."""
    window, _ = document_window(1280, 720)
    every = [list(range(len(detector.view_regions(1280, 720))))]
    assert detector.finish_views(detector.detect_views([window], every)[0], window) == detector.detect_batch([window])[0]


def test_the_region_of_interest_bounds_detection(detector: Detector) -> None:
    window, _ = document_window(1280, 720)
    gated = GatedDetector(detector, {"cam": GateSettings(roi=[0, 300, 1280, 720]), "off": GateSettings(roi=[2000, 0, 2100, 50])})
    inside = gated.detect_batch([GateFrame("cam", 0.0, window)])[0]
    everything = detector.detect(window)
    assert inside and all(d.box[1] >= 300 for d in inside)
    assert len(inside) < len(everything)
    assert gated.detect_batch([GateFrame("off", 0.0, window)])[0] == []  # outside this frame: nothing, counted
    assert gated.counters.counts["roi_empty"] == 1


def test_gating_on_and_off_read_the_same_texts_on_the_sample(detector: Detector) -> None:
    """Every third frame of the bundled sample (its text changes at frames 20, 40, 45 and 60) through
    gate, detector, tracker and OCR: the consolidated track texts are the same with gating off."""
    settings = Settings().resolve_paths(ROOT / "config")
    settings = settings.model_copy(update={"ocr": settings.ocr.model_copy(update={"engine": "tesserocr"})})
    on = replay_clip(settings, SAMPLE, gated=True, step=3)
    off = replay_clip(settings, SAMPLE, gated=False, step=3)
    assert on["consolidated_text"] == off["consolidated_text"]
    assert len(on["consolidated_text"]) >= 6, on
    assert on["gate"]["frames_carried"] >= on["frames"] // 2, on["gate"]
    assert off["gate"]["frames_carried"] == 0
