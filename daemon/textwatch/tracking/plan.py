"""Which detected regions of a frame go to OCR: per-camera filters and the tracker's schedule.

The detect process asks a `RegionPlanner` for every frame. Boxes inside a
camera's masks or below its minimum height are ignored (counted). With
`tracking.enabled`, each remaining box gets a track id and is read only when
the tracker's scheduler says it can tell something new (appeared, changed,
better view, refresh); the rest are skipped and counted, and the tracker's
appear/gone decisions become `_track.<camera>` notices for the publisher,
which consolidates the reads of each track. With tracking off every box is read.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from textwatch.capture import Frame
from textwatch.config import Settings
from textwatch.detect.runtime import Detection
from textwatch.tracking.normalize import masked, too_small
from textwatch.tracking.tracker import GoneTrack, Tracker
from textwatch.wire import TrackNotice


@dataclass
class Plan:
    """A frame's regions to read (with their track ids) and the track notices it caused."""

    reads: list[tuple[Detection, int | None]] = field(default_factory=list)
    notices: list[TrackNotice] = field(default_factory=list)
    detected: int = 0  # regions left after the camera's filters


class RegionPlanner:
    def __init__(self, settings: Settings) -> None:
        self.filters = {camera.id: camera.filters for camera in settings.cameras}
        self.trackers = (
            {camera.id: Tracker(settings.tracking) for camera in settings.cameras} if settings.tracking.enabled else {}
        )
        self.ignored: Counter[str] = Counter()  # regions dropped by the camera's filters, by reason
        self.boxes: dict[tuple[str, int], tuple[int, int, int, int]] = {}  # last box of each live track

    def plan(self, frame: Frame, detections: list[Detection]) -> Plan:
        kept = self.filter(frame.camera, detections)
        tracker = self.trackers.get(frame.camera)
        if tracker is None:
            return Plan(reads=[(d, None) for d in kept], detected=len(kept))
        update = tracker.update(frame.seq, frame.ts, kept, frame.image)
        plan = Plan(detected=len(kept))
        for detection, track, reason in zip(kept, update.tracks, update.ocr):
            self.boxes[(frame.camera, track)] = detection.box
            if reason is not None:
                plan.reads.append((detection, track))
        for track in update.appeared:
            box = self.boxes[(frame.camera, track)]
            plan.notices.append(
                TrackNotice(frame.camera, track, "appeared", frame.seq, frame.ts, box, frame.seq, frame.ts, frame.seq, frame.ts)
            )
        plan.notices += [self.gone_notice(frame.camera, gone, frame.seq, frame.ts) for gone in update.gone]
        return plan

    def unsent(self, camera: str, track: int | None) -> None:
        """A planned read could not be sent (pool full): read that track again next frame."""
        tracker = self.trackers.get(camera)
        if tracker is not None and track is not None:
            tracker.scheduler.forget(track)

    def skipped(self) -> dict[str, int]:
        """Regions not read because the scheduler found nothing new, by reason, all cameras."""
        total: Counter[str] = Counter()
        for tracker in self.trackers.values():
            total.update(tracker.scheduler.skipped)
        return dict(total)

    def filter(self, camera: str, detections: list[Detection]) -> list[Detection]:
        """Drop boxes inside the camera's masks or lower than its minimum height (counted)."""
        settings = self.filters[camera]
        kept = []
        for detection in detections:
            if masked(detection.box, settings):
                self.ignored["masked"] += 1
            elif too_small(detection.box, settings):
                self.ignored["too_small"] += 1
            else:
                kept.append(detection)
        return kept

    def finish(self, seq_of: dict[str, int]) -> list[TrackNotice]:
        """Every live track is gone (end of stream or shutdown)."""
        return [
            self.gone_notice(camera, gone, seq_of.get(camera, gone.last_seq), gone.last_ts)
            for camera, tracker in self.trackers.items()
            for gone in tracker.finish()
        ]

    def gone_notice(self, camera: str, gone: GoneTrack, seq: int, ts: float) -> TrackNotice:
        box = self.boxes.pop((camera, gone.id), (0, 0, 0, 0))
        return TrackNotice(
            camera, gone.id, "gone", seq, ts, box, gone.first_seq, gone.first_ts, gone.last_seq, gone.last_ts, gone.reason
        )
