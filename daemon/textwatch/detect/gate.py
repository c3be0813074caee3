"""Change gating: detect only the views of a frame that changed since they were last detected.

The scene in front of most text cameras (a screen, a sign, a parked car, a
document) stands still for seconds, yet the detector's 7 network inputs per
720p frame (the whole frame and 3x2 tiles, runtime.py) cost 130-250 ms on two
cores. NVR daemons gate their detector by cheap motion detection; so do we:

    1. The frame (or its region of interest, `cameras.gate.roi`) is scaled to
       at most GATE_WIDTH px wide and made grey: ~0.5 ms for 720p.
    2. Each view (the detector's own views: the whole frame and each tile, so a
       change in an overlap counts for every tile holding it) is compared with
       that view's grey image as it was when the view was last detected. Its
       median difference is removed first (a uniform brightness shift: lighting,
       auto exposure), then pixels that still differ by more than `threshold`
       grey levels are counted; a view with at least `min_area` frame pixels'
       worth of them changed. Averaging 4x4 pixels into one (step 1) is what
       keeps sensor noise and compression flicker below the threshold.
    3. Nothing changed: the frame's detections are carried from the last
       detected frame (no network, no merge). Some tiles changed: those tiles
       and the whole-frame view are detected (the whole view sees large text
       across the change), and their boxes are merged with the boxes the
       unchanged tiles gave when they were last detected, exactly as a full
       detect merges its views (Detector.finish_views). More than half the
       tiles changed, the camera's first frame or a new frame size: a full
       detect.
    4. Every view is detected again at least every `full_detect_s`, changed or
       not, so a change below the thresholds is not missed for long. That
       refresh is rolled, one view per frame (the one detected longest ago),
       not all views in one frame: a full 7-view detect is ~0.4-0.7 s on two
       cores, and the frame that carried it (and the OCR reads behind it) was
       the daemon's slowest to publish (issue 16: p99 679 ms on a still scene).

Comparing against the last *detected* image, not the previous frame, makes a
slow change add up until it is detected. Detectors without views (ppocr's DB
net sees the whole frame) are gated per frame: one view, the whole frame.
What was gated is counted (`GateCounters`, published in detect's stats).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol

import cv2
import numpy as np

from textwatch.config import GateSettings
from textwatch.detect.geometry import Box
from textwatch.detect.runtime import Detection, TextDetector
from textwatch.log import get_logger

GATE_WIDTH = 320  # the gate compares frames scaled to at most this many pixels wide
FULL_ABOVE = 0.5  # more than this fraction of the tiles changed: every view is detected
MIN_SPREAD = 4.0  # grey-level std below which a view is flat: its contrast is not matched (noise would be amplified)


class ViewDetector(Protocol):
    """A detector that can run some of a frame's views and merge them with kept ones (runtime.Detector)."""

    def view_regions(self, width: int, height: int) -> list[Box]: ...

    def detect_views(self, frames: list[np.ndarray], chosen: list[list[int]]) -> list[list[Any]]: ...

    def finish_views(self, candidates: list[Any], frame: np.ndarray) -> list[Detection]: ...


class WholeFrameViews:
    """A detector without views (ppocr): the whole frame is its one view, its detections the view's boxes."""

    def __init__(self, detector: TextDetector) -> None:
        self.detector = detector

    def view_regions(self, width: int, height: int) -> list[Box]:
        return [(0, 0, width, height)]

    def detect_views(self, frames: list[np.ndarray], chosen: list[list[int]]) -> list[list[Any]]:
        picked = [frame for frame, views in zip(frames, chosen) if views]
        found = iter(self.detector.detect_batch(picked) if picked else [])
        return [[next(found)] if views else [] for views in chosen]

    def finish_views(self, candidates: list[Any], frame: np.ndarray) -> list[Detection]:
        return list(candidates[0])


def as_view_detector(detector: TextDetector) -> ViewDetector:
    """The detector itself when it has views (yolo), else its whole-frame adapter (ppocr)."""
    if all(hasattr(detector, name) for name in ("view_regions", "detect_views", "finish_views")):
        return detector  # type: ignore[return-value]
    return WholeFrameViews(detector)


@dataclass(frozen=True)
class GateFrame:
    """One frame to detect: its camera (whose gate and memory apply), capture time and pixels."""

    camera: str
    ts: float
    image: np.ndarray


@dataclass(frozen=True)
class Decision:
    """Which views of a frame to detect now; `reason` says why (first, size, much, changed, refresh, unchanged).

    `refreshed` is the view added because it was due (step 4), or None."""

    views: tuple[int, ...]
    reason: str
    refreshed: int | None = None

    @property
    def full(self) -> bool:
        return self.reason in ("first", "size", "much", "ungated")


@dataclass
class Memory:
    """What one camera's gate remembers: its views, how each looked and what it gave when last detected."""

    shape: tuple[int, int]  # height, width of the (roi) image
    regions: list[Box]  # the detector's views in image pixels, the whole frame first
    cells: list[tuple[slice, slice]]  # the same views in gate pixels
    references: list[np.ndarray]  # each view's gate image when it was last detected
    candidates: list[Any]  # each view's boxes when it was last detected
    detected_ts: list[float]  # when each view was last detected
    detections: list[Detection] = field(default_factory=list)  # the last merged detections


@dataclass
class GateCounters:
    """What the gate did since the process started; published in detect's stats as `gate`."""

    counts: Counter[str] = field(default_factory=Counter)

    def frame(self, decision: Decision, views: int) -> None:
        detected = len(decision.views)
        self.counts["frames_detected" if detected else "frames_carried"] += 1
        if decision.full:
            self.counts["frames_full"] += 1
        self.counts["views_detected"] += detected
        self.counts["views_carried"] += views - detected
        self.counts["views_refreshed"] += decision.refreshed is not None

    def as_dict(self) -> dict[str, int]:
        keys = (
            "frames_detected", "frames_carried", "frames_full", "views_detected", "views_carried", "views_refreshed",
            "roi_empty",
        )
        return {key: self.counts[key] for key in keys}


class GatedDetector:
    """The detector behind each camera's change gate; one per detect process, like the detector.

    `detect_batch` takes frames of any cameras and returns each frame's detections
    in frame pixels, running one batched forward over every view that must be
    detected. A camera whose gate is off has every view detected every frame
    (exactly `detector.detect_batch`); its region of interest still applies.
    """

    def __init__(self, detector: TextDetector, gates: dict[str, GateSettings]) -> None:
        self.detector = as_view_detector(detector)
        self.gates = gates
        self.memory: dict[str, Memory] = {}
        self.counters = GateCounters()
        self.warned: set[str] = set()

    def detect_batch(self, frames: list[GateFrame]) -> list[list[Detection]]:
        """Each frame's detections: gate, one forward over the chosen views, merge, back to frame pixels."""
        windows = [self.window(frame) for frame in frames]
        images = [frame.image[y1:y2, x1:x2] for frame, (x1, y1, x2, y2) in zip(frames, windows)]
        smalls = [self.gate_image(frame.camera, image) for frame, image in zip(frames, images)]
        decisions = [self.decide(f, image, small) for f, image, small in zip(frames, images, smalls)]
        chosen = [list(decision.views) for decision in decisions]
        found = self.detector.detect_views(images, chosen)
        out = []
        for frame, image, small, decision, views, window in zip(frames, images, smalls, decisions, found, windows):
            detections = self.remember(frame, image, small, decision, views)
            out.append(shifted(detections, window[0], window[1]))
        return out

    def window(self, frame: GateFrame) -> Box:
        """The camera's region of interest clipped to this frame; an empty one is logged once and counted."""
        height, width = frame.image.shape[:2]
        roi = self.gates[frame.camera].roi
        if not roi:
            return (0, 0, width, height)
        x1, y1, x2, y2 = min(roi[0], width), min(roi[1], height), min(roi[2], width), min(roi[3], height)
        if x2 <= x1 or y2 <= y1:
            self.counters.counts["roi_empty"] += 1
            if frame.camera not in self.warned:
                self.warned.add(frame.camera)
                get_logger().warning("gate_roi_outside_frame", camera=frame.camera, roi=roi, frame=f"{width}x{height}")
        return (x1, y1, x2, y2)

    def gate_image(self, camera: str, image: np.ndarray) -> np.ndarray | None:
        """The small grey image the gate compares (None where the gate is off or the image is empty)."""
        if not self.gates[camera].enabled or image.size == 0:
            return None
        return gate_image(image)

    def decide(self, frame: GateFrame, image: np.ndarray, small: np.ndarray | None) -> Decision:
        """The views to detect in this frame (all of them where the gate is off or nothing is remembered)."""
        height, width = image.shape[:2]
        if height == 0 or width == 0:
            return Decision((), "roi_empty")
        memory = self.memory.get(frame.camera)
        if small is None:
            return Decision(tuple(range(len(self.detector.view_regions(width, height)))), "ungated")
        if memory is None:
            return Decision(tuple(range(len(self.detector.view_regions(width, height)))), "first")
        if memory.shape != (height, width):
            return Decision(tuple(range(len(self.detector.view_regions(width, height)))), "size")
        decision = choose_views(changed_views(memory, small, self.gates[frame.camera], width))
        if decision.full:
            return decision
        return with_refresh(decision, memory.detected_ts, frame.ts, self.gates[frame.camera].full_detect_s)

    def remember(
        self, frame: GateFrame, image: np.ndarray, small: np.ndarray | None, decision: Decision, views: list[Any]
    ) -> list[Detection]:
        """Keep what the detected views gave and looked like; the frame's merged detections."""
        if decision.reason == "roi_empty":
            return []
        height, width = image.shape[:2]
        regions = self.detector.view_regions(width, height)
        self.counters.frame(decision, len(regions))
        if small is None:  # ungated: nothing to remember
            self.memory.pop(frame.camera, None)
            return self.detector.finish_views(views, image)
        memory = self.memory.get(frame.camera)
        if memory is None or decision.reason in ("first", "size"):
            cells = gate_cells(regions, small.shape, width)
            empty = [np.empty(0, np.uint8)] * len(regions)
            memory = Memory((height, width), regions, cells, empty, [None] * len(regions), [frame.ts] * len(regions))
            self.memory[frame.camera] = memory
        if not decision.views:
            return memory.detections
        for index, boxes in zip(decision.views, views):
            memory.candidates[index] = boxes
            rows, cols = memory.cells[index]
            memory.references[index] = small[rows, cols].copy()
            memory.detected_ts[index] = frame.ts
        memory.detections = self.detector.finish_views(memory.candidates, image)
        return memory.detections


def gate_image(image: np.ndarray) -> np.ndarray:
    """The frame scaled to at most GATE_WIDTH px wide (area average: noise and flicker average out), grey."""
    height, width = image.shape[:2]
    scale = min(1.0, GATE_WIDTH / width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA) if scale < 1.0 else image
    return cv2.cvtColor(small, cv2.COLOR_BGR2GRAY) if small.ndim == 3 else small


def gate_cells(regions: list[Box], small_shape: tuple[int, ...], width: int) -> list[tuple[slice, slice]]:
    """Each view in gate pixels (rounded outwards, so a view's edge pixels count for it)."""
    scale = small_shape[1] / width
    cells = []
    for x1, y1, x2, y2 in regions:
        rows = slice(int(np.floor(y1 * scale)), max(int(np.floor(y1 * scale)) + 1, int(np.ceil(y2 * scale))))
        cols = slice(int(np.floor(x1 * scale)), max(int(np.floor(x1 * scale)) + 1, int(np.ceil(x2 * scale))))
        cells.append((rows, cols))
    return cells


def changed_pixels(current: np.ndarray, reference: np.ndarray, threshold: int) -> int:
    """Pixels that differ by more than `threshold` once lighting is matched: the current view is scaled to
    the reference's contrast (std) and shifted to its median, so exposure and gain drift do not count."""
    if current.shape != reference.shape:
        return current.size
    now, then = current.astype(np.float32), reference.astype(np.float32)
    spread_now, spread_then = float(now.std()), float(then.std())
    if spread_now > MIN_SPREAD and spread_then > MIN_SPREAD:
        now *= spread_then / spread_now
    diff = now - then
    diff -= float(np.median(diff))
    return int(np.count_nonzero(np.abs(diff) > threshold))


def changed_views(memory: Memory, small: np.ndarray, settings: GateSettings, width: int) -> list[bool]:
    """Which views changed since they were last detected (see the module docstring, step 2)."""
    scale = small.shape[1] / width
    least = max(1, round(settings.min_area * scale * scale))
    flags = []
    for (rows, cols), reference in zip(memory.cells, memory.references):
        flags.append(changed_pixels(small[rows, cols], reference, settings.threshold) >= least)
    return flags


def choose_views(changed: list[bool]) -> Decision:
    """Changed tiles plus the whole view; every view when more than FULL_ABOVE of the tiles changed."""
    tiles = changed[1:]
    if not any(changed):
        return Decision((), "unchanged")
    if tiles and sum(tiles) > FULL_ABOVE * len(tiles):
        return Decision(tuple(range(len(changed))), "much")
    return Decision((0, *(index + 1 for index, flag in enumerate(tiles) if flag)), "changed")


def with_refresh(decision: Decision, detected_ts: list[float], ts: float, period: float) -> Decision:
    """The decision plus the one view detected longest ago, when that was `period` s ago or more (step 4)."""
    due = [index for index, when in enumerate(detected_ts) if ts - when >= period and index not in decision.views]
    if not due:
        return decision
    stalest = min(due, key=lambda index: detected_ts[index])
    reason = decision.reason if decision.views else "refresh"
    return Decision(tuple(sorted((*decision.views, stalest))), reason, stalest)


def shifted(detections: list[Detection], dx: int, dy: int) -> list[Detection]:
    """Detections of a region of interest moved back into frame pixels."""
    if dx == 0 and dy == 0:
        return detections
    return [
        Detection((d.box[0] + dx, d.box[1] + dy, d.box[2] + dx, d.box[3] + dy), d.confidence, d.text_height)
        for d in detections
    ]
