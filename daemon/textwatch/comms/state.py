"""From bus messages to what a home or plant automation reads: text events and one state per camera.

`CameraBook` takes the daemon's track.<camera> events (consolidated texts),
event.<camera> (source up and down) and detect's stats (each camera's `up`,
so a bridge that joined late still knows the camera's status) and gives:

    MqttTrackText   for <topic_prefix>/<camera>/text: new (a track's first text), updated (its text
                    changed), ended (its track is gone, with the final text)
    MqttCameraState for <topic_prefix>/<camera>/state (retained): status, latest text, the live
                    tracks with a text, and whether each of the camera's filters.known strings is
                    on screen (Home Assistant's per-string sensors read that)

Only the cameras of the config are kept (bounded memory; the discovery configs
name the same ones); a message of another camera is refused (ValueError, counted
by the bridge). Live tracks per camera are bounded by MAX_TRACKS: the oldest
seen is forgotten first.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from textwatch import wire
from textwatch.config import Settings

MAX_TRACKS = 256  # live tracks with a text kept per camera (the state message stays small)
STATUS_UNKNOWN, STATUS_ONLINE, STATUS_OFFLINE = "unknown", "online", "offline"


@dataclass
class Camera:
    """What the bridge knows of one camera now."""

    id: str
    known: list[str]
    status: str = STATUS_UNKNOWN
    text: str = ""
    text_ts: float | None = None
    tracks: dict[int, wire.MqttTrackState] = field(default_factory=dict)
    known_last_seen: dict[str, float] = field(default_factory=dict)
    ts: float = 0.0

    def state(self) -> wire.MqttCameraState:
        live = sorted(self.tracks.values(), key=lambda t: t.last_seen, reverse=True)
        on_screen = {t.text for t in live}
        known = [wire.MqttKnownState(text, text in on_screen, self.known_last_seen.get(text)) for text in self.known]
        return wire.MqttCameraState(self.id, self.status, self.text, self.text_ts, live, known, self.ts)


class CameraBook:
    """Every configured camera's state; each `take_*` returns the text events it causes and marks states dirty."""

    def __init__(self, settings: Settings) -> None:
        self.cameras = {c.id: Camera(c.id, list(dict.fromkeys(c.filters.known))) for c in settings.cameras}
        self.dirty: set[str] = set(self.cameras)  # states not yet published since they changed

    def camera(self, camera_id: str) -> Camera:
        camera = self.cameras.get(camera_id)
        if camera is None:
            raise ValueError(f"camera {camera_id!r} is not in the config")
        return camera

    def take_track(self, event: wire.TrackEvent) -> list[wire.MqttTrackText]:
        """A track event: new / updated / ended text, and the camera's state updated."""
        camera = self.camera(event.camera)
        before = camera.tracks.get(event.track)
        camera.ts = max(camera.ts, event.ts)
        if event.event == "gone":
            camera.tracks.pop(event.track, None)
            self._changed(camera)
            return [self._text(event, "ended")] if event.text else []
        if not event.text:
            return []
        camera.tracks[event.track] = wire.MqttTrackState(
            event.track, event.text, event.confidence, event.box, event.first_ts, event.last_ts
        )
        self._bound(camera)
        self._saw(camera, event.text, event.ts)
        self._changed(camera)
        if before is None:
            return [self._text(event, "new")]
        return [self._text(event, "updated")] if before.text != event.text else []

    def take_source(self, event: wire.SourceEvent) -> None:
        camera = self.camera(event.camera)
        self._set_status(camera, STATUS_ONLINE if event.event == "source_up" else STATUS_OFFLINE, event.ts)

    def take_detect_stats(self, stats: wire.DetectStats) -> None:
        """detect's per-camera `up`: the status of a camera whose last source event the bridge missed."""
        for camera_id, counters in stats.cameras.items():
            camera = self.cameras.get(camera_id)
            if camera is not None:
                self._set_status(camera, STATUS_ONLINE if counters.up else STATUS_OFFLINE, stats.ts)

    def take_dirty(self) -> list[wire.MqttCameraState]:
        """The states changed since the last call (all of them after `mark_all_dirty`)."""
        states = [self.cameras[c].state() for c in sorted(self.dirty)]
        self.dirty.clear()
        return states

    def mark_all_dirty(self) -> None:
        """After a (re)connect: the broker may have lost the retained states, send them all again."""
        self.dirty = set(self.cameras)

    def _set_status(self, camera: Camera, status: str, ts: float) -> None:
        if camera.status != status:
            camera.status = status
            camera.ts = max(camera.ts, ts)
            self._changed(camera)

    def _saw(self, camera: Camera, text: str, ts: float) -> None:
        if text != camera.text:
            camera.text, camera.text_ts = text, ts
        if text in camera.known:
            camera.known_last_seen[text] = ts

    def _bound(self, camera: Camera) -> None:
        while len(camera.tracks) > MAX_TRACKS:
            oldest = min(camera.tracks.values(), key=lambda t: t.last_seen)
            del camera.tracks[oldest.track]

    def _changed(self, camera: Camera) -> None:
        self.dirty.add(camera.id)

    @staticmethod
    def _text(event: wire.TrackEvent, kind: str) -> wire.MqttTrackText:
        return wire.MqttTrackText(
            camera=event.camera, track=event.track, event=kind, text=event.text, confidence=event.confidence,
            box=event.box, first_seen=event.first_ts, last_seen=event.last_ts, reads=event.reads,
            reason=event.reason if kind == "ended" else "",
        )
