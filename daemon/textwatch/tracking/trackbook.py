"""One answer per text region: the publisher's side of tracking.

The detect process knows when a track appears and goes (`_track.<camera>`
notices); the workers' `text.<camera>` results carry the track id of each
read. The `TrackBook` joins the two in the publisher, the one process that sees
both, and emits `track.<camera>` events:

    appeared  when the tracker first sees the region (text "" until a read votes)
    changed   whenever the consolidated text of the track changes
    gone      once the region left, with the final consolidated text

A gone notice is held for `pipeline.frame_timeout_s` before the track is
closed, so reads of its last frames still in the OCR pool can vote. Memory is
bounded: consolidation keeps at most `consolidation.max_reads` reads per track,
and a track is forgotten when it is closed; a track whose gone notice was lost
is closed after `MAX_SILENT_S` without reads or notices.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from textwatch.config import Settings
from textwatch.tracking.consolidate import Consolidator
from textwatch.wire import TextResult, TrackEvent, TrackNotice

MAX_SILENT_S = 300.0  # a track with no read or notice for this long is closed (its gone notice was lost)


@dataclass
class Live:
    """What the book knows of a live track."""

    camera: str
    track: int
    box: tuple[int, int, int, int] | None
    first_seq: int
    first_ts: float
    last_seq: int
    last_ts: float
    text: str = ""
    confidence: float = 0.0
    reads: int = 0
    touched: float = 0.0  # wall time of the last notice or read
    closing: TrackNotice | None = None
    close_at: float = 0.0


@dataclass
class TrackBook:
    settings: Settings
    tracks: dict[tuple[str, int], Live] = field(default_factory=dict)
    consolidators: dict[str, Consolidator] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.consolidators = {
            camera.id: Consolidator(self.settings.consolidation, camera.filters) for camera in self.settings.cameras
        }

    def notice(self, notice: TrackNotice, now: float) -> list[TrackEvent]:
        """A tracker notice: appeared is published at once, gone is held for late reads."""
        key = (notice.camera, notice.track)
        if notice.event == "appeared":
            live = Live(notice.camera, notice.track, notice.box, notice.first_seq, notice.first_ts,
                        notice.last_seq, notice.last_ts, touched=now)
            self.tracks[key] = live
            return [self.event(live, "appeared", notice.ts)]
        live = self.tracks.get(key)
        if live is not None:
            live.closing, live.close_at, live.touched = notice, now + self.settings.pipeline.frame_timeout_s, now
        return []

    def read(self, result: TextResult, now: float) -> list[TrackEvent]:
        """A read of a tracked region votes; a change of the consolidated text is an event."""
        if result.track is None or result.status != "text":
            return []
        live = self.tracks.get((result.camera, result.track))
        consolidator = self.consolidators.get(result.camera)
        if live is None or consolidator is None:
            return []
        live.box, live.last_seq, live.last_ts, live.touched = result.box, result.seq, result.ts, now
        change = consolidator.add(result.track, result.text, result.ocr_confidence, result.ts)
        live.reads += 1
        if change is None:
            return []
        live.text, live.confidence = change.text or "", change.confidence
        return [self.event(live, "changed", result.ts)]

    def expire(self, now: float) -> list[TrackEvent]:
        """Close tracks whose gone notice is due, or that fell silent for MAX_SILENT_S."""
        due = [
            live for live in self.tracks.values()
            if (live.closing is not None and now >= live.close_at) or now - live.touched > MAX_SILENT_S
        ]
        return [self.close(live) for live in due]

    def flush(self) -> list[TrackEvent]:
        """Close every track (publisher shutdown)."""
        return [self.close(live) for live in list(self.tracks.values())]

    def close(self, live: Live) -> TrackEvent:
        del self.tracks[(live.camera, live.track)]
        final = self.consolidators[live.camera].end(live.track) if live.camera in self.consolidators else None
        if final is not None:
            live.text, live.confidence = final.text or "", final.confidence
        notice = live.closing
        if notice is not None:
            live.box, live.last_seq, live.last_ts = notice.box, notice.last_seq, notice.last_ts
        reason = notice.reason if notice is not None else "silent"
        return self.event(live, "gone", live.last_ts, reason)

    def event(self, live: Live, kind: str, ts: float, reason: str = "") -> TrackEvent:
        return TrackEvent(
            camera=live.camera, track=live.track, event=kind, ts=ts, box=live.box, text=live.text,
            confidence=round(live.confidence, 2), reads=live.reads, first_seq=live.first_seq,
            first_ts=live.first_ts, last_seq=live.last_seq, last_ts=live.last_ts, reason=reason,
        )

    def __len__(self) -> int:
        return len(self.tracks)
