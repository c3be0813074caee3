"""Per-camera tracking of text boxes across frames, and which crops are worth reading.

A static scene at 10 fps shows the same sign in every frame; reading it every
frame costs Tesseract time and floods subscribers with the same text. The
`Tracker` gives each text region a stable id while it is in view, and its
`OcrScheduler` sends a region's crop to OCR only when that can tell something
new:

    appeared  the track is new
    changed   the crop looks different from the last crop sent (its signature:
              a 16x8 grayscale thumbnail, z-normalised so brightness and
              contrast drift do not count, compared by mean absolute difference)
    better    the box is >= better_area_ratio larger, or >= better_sharpness_ratio
              sharper (variance of the Laplacian), than the best crop sent yet
    refresh   refresh_s passed since the last crop sent
Everything else is skipped and counted by reason ("unchanged", or "empty" for
a box with no pixels inside the frame). Refreshes are spread over frames: a
frame reads at most as many as keep every track refreshed each `refresh_s` at
the camera's frame rate (ceil(tracks x frame interval / refresh_s), at least
one), the longest-waiting first; the others wait for the next frame
("refresh_deferred"). Without that, tracks that appeared together (every line
of a screen) came due together, and their frame waited for all their reads:
on a still scene that burst was the daemon's frame latency (issue 16).

With `schedule` off every crop is read (reason "every_frame"): tracks and
consolidation as usual, OCR as without tracking; the benchmark compares the two.

The signature sees a crop that moved, changed its words or changed several
characters; one changed character in a long line (a clock's last digit) moves
a 16x8 thumbnail about as much as sensor noise does, so such an edit is read
at the next refresh, at most `refresh_s` later. Comparing with the last crop *sent*
rather than the previous frame makes slow drift add up until it is read.

Association: each track's box is predicted at the frame's time with a
constant velocity (smoothed over matches); detections are matched to tracks
by IoU with the predicted box (or the last box, for a track that stopped
dead), at least `iou_match`, by Hungarian assignment when scipy is installed
and greedily by IoU otherwise (equivalent for the well-separated boxes of
text). Unmatched detections start tracks; a track missed for more than
`max_missed` frames, or not seen for more than `max_age_s`, is gone.
Track ids count from 1 per Tracker, i.e. per camera, and are never reused.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from textwatch.config import TrackingSettings
from textwatch.detect.geometry import crop
from textwatch.detect.runtime import Detection

try:  # Optional: the Hungarian method. Greedy by IoU is the fallback.
    from scipy.optimize import linear_sum_assignment
except ImportError:  # pragma: no cover - depends on the environment
    linear_sum_assignment = None  # type: ignore[assignment]

SIGNATURE_SIZE = (16, 8)  # thumbnail width, height
MIN_CONTRAST = 0.04  # thumbnail std floor (0-1 scale): a blank crop's noise is not "change"
VELOCITY_SMOOTHING = 0.5  # weight of the newest velocity estimate

DEFERRED = "deferred"  # a refresh that waits for a later frame (refresh_budget)

GoneReason = Literal["missed", "aged", "finished"]


@dataclass(frozen=True)
class GoneTrack:
    """A track that left: when it was first and last seen, and why it ended."""

    id: int
    first_seq: int
    first_ts: float
    last_seq: int
    last_ts: float
    reason: GoneReason


@dataclass(frozen=True)
class TrackUpdate:
    """What one frame did to the tracks; `tracks` and `ocr` follow the order of the detections."""

    seq: int
    ts: float
    tracks: tuple[int, ...]  # track id of each detection
    ocr: tuple[str | None, ...]  # why each detection's crop goes to OCR; None = skipped
    appeared: tuple[int, ...]
    gone: tuple[GoneTrack, ...]


@dataclass
class Track:
    id: int
    box: np.ndarray  # float x1, y1, x2, y2 as last detected
    velocity: np.ndarray  # pixels per second, per coordinate
    first_seq: int
    first_ts: float
    last_seq: int
    last_ts: float
    hits: int = 1
    missed: int = 0

    def predicted(self, ts: float) -> np.ndarray:
        return self.box + self.velocity * max(0.0, ts - self.last_ts)

    def gone(self, reason: GoneReason) -> GoneTrack:
        return GoneTrack(self.id, self.first_seq, self.first_ts, self.last_seq, self.last_ts, reason)


@dataclass
class CropMemory:
    """What the scheduler remembers of the last and best crops sent for one track."""

    signature: np.ndarray
    sent_ts: float
    best_area: float
    best_sharpness: float


@dataclass(frozen=True)
class CropLook:
    """What the scheduler measures of one crop: its signature, area and sharpness."""

    signature: np.ndarray
    area: float
    sharpness: float


class OcrScheduler:
    """Decides per track and frame whether the crop goes to OCR; counts what it sends and skips."""

    def __init__(self, settings: TrackingSettings) -> None:
        self.settings = settings
        self.memory: dict[int, CropMemory] = {}
        self.sent: Counter[str] = Counter()
        self.skipped: Counter[str] = Counter()
        self.last_ts: float | None = None  # the previous frame's time: the frame interval sizes the refreshes

    def decide_frame(self, ts: float, track_ids: list[int], crops: list[np.ndarray], live: int) -> list[str | None]:
        """Each crop's reason to be read now, or None (counted in `skipped`): measure, decide, spread the
        refreshes over frames, remember what is sent. `live` is the camera's track count."""
        looks = [look_at(crop) if crop.size else None for crop in crops]
        reasons = [self.reason(self.memory.get(tid), ts, look) if look else None for tid, look in zip(track_ids, looks)]
        self.defer_refreshes(reasons, track_ids, self.refresh_budget(ts, live))
        for track_id, look, reason in zip(track_ids, looks, reasons):
            if look is None:
                self.skipped["empty"] += 1
            elif reason is None:
                self.skipped["unchanged"] += 1
            elif reason != DEFERRED:
                self.sent[reason] += 1
                self.remember(track_id, ts, look)
        self.last_ts = ts
        return [None if reason == DEFERRED else reason for reason in reasons]

    def refresh_budget(self, ts: float, live: int) -> int:
        """Refreshes this frame may read: enough to refresh `live` tracks each refresh_s at this frame rate."""
        if self.last_ts is None:
            return live
        interval = min(max(ts - self.last_ts, 0.0), self.settings.refresh_s)
        return max(1, math.ceil(live * interval / self.settings.refresh_s))

    def defer_refreshes(self, reasons: list[str | None], track_ids: list[int], budget: int) -> None:
        """Past the budget, refreshes wait (the longest-waiting are read first); marked DEFERRED in place."""
        due = [index for index, reason in enumerate(reasons) if reason == "refresh"]
        due.sort(key=lambda index: self.memory[track_ids[index]].sent_ts)
        for index in due[budget:]:
            reasons[index] = DEFERRED
            self.skipped["refresh_deferred"] += 1

    def reason(self, memory: CropMemory | None, ts: float, look: CropLook) -> str | None:
        s = self.settings
        if memory is None:
            return "appeared"
        if signature_distance(look.signature, memory.signature) > s.change_threshold:
            return "changed"
        larger = look.area >= s.better_area_ratio * memory.best_area
        sharper = memory.best_sharpness > 0 and look.sharpness >= s.better_sharpness_ratio * memory.best_sharpness
        if larger or sharper:
            return "better"
        if ts - memory.sent_ts >= s.refresh_s:
            return "refresh"
        return None

    def remember(self, track_id: int, ts: float, look: CropLook) -> None:
        previous = self.memory.get(track_id)
        best_area = look.area if previous is None else max(previous.best_area, look.area)
        best_sharpness = look.sharpness if previous is None else max(previous.best_sharpness, look.sharpness)
        self.memory[track_id] = CropMemory(look.signature, ts, best_area, best_sharpness)

    def forget(self, track_id: int) -> None:
        self.memory.pop(track_id, None)


class Tracker:
    """The tracks of one camera; feed it every detected frame in order."""

    def __init__(self, settings: TrackingSettings) -> None:
        self.settings = settings
        self.scheduler = OcrScheduler(settings)
        self.tracks: dict[int, Track] = {}
        self.next_id = 1

    def update(self, seq: int, ts: float, detections: list[Detection], frame: np.ndarray) -> TrackUpdate:
        """Associate this frame's detections with the tracks and decide which crops to read."""
        gone = self.expire_aged(ts)
        boxes = [np.asarray(detection.box, dtype=np.float64) for detection in detections]
        pairs = self.associate(ts, boxes)
        ids: list[int | None] = [None] * len(detections)
        for track_id, index in pairs:
            self.follow(self.tracks[track_id], seq, ts, boxes[index])
            ids[index] = track_id
        track_ids = [tid if tid is not None else self.start(seq, ts, boxes[index]) for index, tid in enumerate(ids)]
        appeared = [tid for tid, matched in zip(track_ids, ids) if matched is None]
        gone += self.expire_missed({track_id for track_id, _ in pairs} | set(appeared))
        if self.settings.schedule:
            crops = [crop(frame, d.box) for d in detections]
            ocr = self.scheduler.decide_frame(ts, track_ids, crops, len(self.tracks))
        else:
            ocr = ["every_frame"] * len(detections)
        return TrackUpdate(seq, ts, tuple(track_ids), tuple(ocr), tuple(appeared), tuple(gone))

    def finish(self) -> list[GoneTrack]:
        """End every track (end of stream, source down): they are all gone, reason 'finished'."""
        gone = [track.gone("finished") for track in self.tracks.values()]
        for track in gone:
            self.drop(track.id)
        return gone

    def expire_aged(self, ts: float) -> list[GoneTrack]:
        """Tracks not seen for more than max_age_s cannot match anything any more."""
        aged = [track for track in self.tracks.values() if ts - track.last_ts > self.settings.max_age_s]
        for track in aged:
            self.drop(track.id)
        return [track.gone("aged") for track in aged]

    def associate(self, ts: float, boxes: list[np.ndarray]) -> list[tuple[int, int]]:
        """(track id, detection index) pairs whose IoU reaches iou_match."""
        tracks = list(self.tracks.values())
        if not tracks or not boxes:
            return []
        overlap = np.array([[max(iou(t.predicted(ts), b), iou(t.box, b)) for b in boxes] for t in tracks])
        return [(tracks[row].id, col) for row, col in assign(overlap, self.settings.iou_match)]

    def follow(self, track: Track, seq: int, ts: float, box: np.ndarray) -> None:
        """Move a matched track to its new box and update its velocity."""
        dt = ts - track.last_ts
        if dt > 0:
            measured = (box - track.box) / dt
            weight = 1.0 if track.hits == 1 else VELOCITY_SMOOTHING
            track.velocity = weight * measured + (1.0 - weight) * track.velocity
        track.box, track.last_seq, track.last_ts = box, seq, ts
        track.hits += 1
        track.missed = 0

    def start(self, seq: int, ts: float, box: np.ndarray) -> int:
        track = Track(self.next_id, box, np.zeros(4), seq, ts, seq, ts)
        self.tracks[track.id] = track
        self.next_id += 1
        return track.id

    def expire_missed(self, seen: set[int]) -> list[GoneTrack]:
        """Count a miss for every track not seen in this frame; more than max_missed = gone."""
        gone: list[GoneTrack] = []
        for track in list(self.tracks.values()):
            if track.id in seen:
                continue
            track.missed += 1
            if track.missed > self.settings.max_missed:
                self.drop(track.id)
                gone.append(track.gone("missed"))
        return gone

    def drop(self, track_id: int) -> None:
        del self.tracks[track_id]
        self.scheduler.forget(track_id)


def assign(overlap: np.ndarray, least: float) -> list[tuple[int, int]]:
    """Row/column pairs maximising total IoU (Hungarian if scipy is present, else greedy), each >= least."""
    if linear_sum_assignment is not None:
        rows, cols = linear_sum_assignment(-overlap)
        pairs = zip(rows.tolist(), cols.tolist())
    else:
        pairs = greedy_pairs(overlap)
    return [(row, col) for row, col in pairs if overlap[row, col] >= least]


def greedy_pairs(overlap: np.ndarray) -> list[tuple[int, int]]:
    """Highest IoU first, each row and column used once."""
    order = np.argsort(-overlap, axis=None, kind="stable")
    used_rows: set[int] = set()
    used_cols: set[int] = set()
    pairs: list[tuple[int, int]] = []
    for flat in order.tolist():
        row, col = divmod(flat, overlap.shape[1])
        if row not in used_rows and col not in used_cols and overlap[row, col] > 0:
            used_rows.add(row)
            used_cols.add(col)
            pairs.append((row, col))
    return pairs


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two x1, y1, x2, y2 boxes."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def gray(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image


def crop_signature(image: np.ndarray) -> np.ndarray:
    """A 16x8 thumbnail, z-normalised: what the crop looks like, whatever its brightness and contrast."""
    thumb = cv2.resize(gray(image), SIGNATURE_SIZE, interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    centred = thumb - thumb.mean()
    return centred / max(float(centred.std()), MIN_CONTRAST)


def signature_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference: ~0.01 for sensor noise, ~0.3 for two changed characters, ~0.5 for other text."""
    return float(np.abs(a - b).mean())


def sharpness(image: np.ndarray) -> float:
    """Variance of the Laplacian: higher is sharper (blur removes the fine edges of characters)."""
    return float(cv2.Laplacian(gray(image), cv2.CV_64F).var())


def look_at(image: np.ndarray) -> CropLook:
    """What the scheduler compares of a crop (not empty): signature, area and sharpness."""
    return CropLook(crop_signature(image), float(image.shape[0] * image.shape[1]), sharpness(image))
