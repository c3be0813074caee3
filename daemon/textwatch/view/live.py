"""The view's live side: one thread on the bus keeps the newest of everything and tells the page.

A SUB on the daemon's publish endpoint (bus.publish, CURVE from the config
like `textwatch subscribe`) receives snapshot.*, track.*, event.* and stats.
The thread keeps, per camera, the newest snapshot (JPEG and boxes) and the
text of each live track, plus the latest stats of each process, and hands
every change to the asyncio loop, which fans it out to the pages' event
streams (server.py). Only the newest frame is kept: a page that is slow gets
the frame that is current when it asks, never a backlog.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import zmq

from textwatch import bus, wire

TOPICS = (wire.TOPIC_SNAPSHOT + ".", wire.TOPIC_TRACK + ".", wire.TOPIC_EVENT + ".", wire.TOPIC_STATS)
RCVHWM = 200  # a slow view drops on its own side; snapshots are a few per second per camera
POLL_MS = 200
FEED = 50  # track events kept for a page that opens now


@dataclass
class CameraState:
    snapshot: dict[str, Any] | None = None  # the header of the newest snapshot
    jpeg: bytes | None = None
    tracks: dict[int, str] = field(default_factory=dict)  # live track -> consolidated text
    up: bool | None = None
    source_event: dict[str, Any] | None = None


@dataclass
class ViewCounters:
    snapshots: int = 0
    track_events: int = 0
    rejected: int = 0  # malformed bus messages
    events_dropped: int = 0  # page events a slow page's queue could not take


class LiveState:
    """What the page shows live; written by the bus thread, read by the server (under `lock`)."""

    def __init__(self, cameras: list[str]) -> None:
        self.lock = threading.Lock()
        self.cameras = {camera: CameraState() for camera in cameras}
        self.feed: deque[dict[str, Any]] = deque(maxlen=FEED)
        self.stats: dict[str, dict[str, Any]] = {}  # process -> latest stats payload
        self.counters = ViewCounters()

    def take(self, name: str, payload: dict[str, Any], jpeg: bytes | None) -> tuple[str, dict[str, Any]] | None:
        """Apply one bus message; the page event (kind, data) it makes, or None."""
        kind = name.split(".", 1)[0]
        with self.lock:
            if kind == wire.TOPIC_SNAPSHOT and jpeg is not None:
                return self._snapshot(wire.snapshot_from_dict(payload), payload, jpeg)
            if kind == wire.TOPIC_TRACK:
                return self._track(wire.track_event_from_dict(payload), payload)
            if kind == wire.TOPIC_EVENT and payload.get("camera") in self.cameras:
                state = self.cameras[payload["camera"]]
                state.up, state.source_event = payload.get("event") == "source_up", payload
                return "source", payload
            if kind == wire.TOPIC_STATS:
                stats = wire.stats_from_dict(payload)
                self.stats[stats.process] = wire.stats_payload(stats)
                if isinstance(stats, wire.DetectStats):
                    for camera, counters in stats.cameras.items():
                        if camera in self.cameras:
                            self.cameras[camera].up = counters.up
                return "status", self.status()
        return None

    def _snapshot(self, header: wire.SnapshotHeader, raw: dict[str, Any], jpeg: bytes) -> tuple[str, dict[str, Any]] | None:
        state = self.cameras.get(header.camera)
        if state is None:
            return None
        state.snapshot, state.jpeg = raw, jpeg
        self.counters.snapshots += 1
        return "frame", self.frame(header.camera, state)

    def _track(self, event: wire.TrackEvent, raw: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
        state = self.cameras.get(event.camera)
        if state is None:
            return None
        if event.event == "gone":
            state.tracks.pop(event.track, None)
        else:
            state.tracks[event.track] = event.text
        self.counters.track_events += 1
        self.feed.append(raw)
        return "track", raw

    def frame(self, camera: str, state: CameraState) -> dict[str, Any]:
        """A snapshot's page event: the boxes with their live texts (the page loads the JPEG by seq)."""
        snap = state.snapshot or {}
        boxes = [{**b, "text": state.tracks.get(b["track"], "") if b.get("track") is not None else ""}
                 for b in snap.get("boxes", [])]
        return {"camera": camera, "seq": snap.get("seq"), "ts": snap.get("ts"), "width": snap.get("width"),
                "height": snap.get("height"), "boxes": boxes}

    def status(self) -> dict[str, Any]:
        """Cameras (up, frames read) and a few counters from the processes' stats."""
        detect = [s for s in self.stats.values() if s.get("role") == "detect"]
        workers = [s for s in self.stats.values() if s.get("role") == "worker"]
        history = [s for s in self.stats.values() if s.get("role") == "history"]
        cameras = {}
        for camera, state in self.cameras.items():
            read = sum(d.get("cameras", {}).get(camera, {}).get("frames_read", 0) for d in detect)
            cameras[camera] = {"up": state.up, "frames_read": read, "live_tracks": len(state.tracks)}
        return {
            "cameras": cameras,
            "counters": {
                "frames_detected": sum(d.get("frames", 0) for d in detect),
                "crops_read": sum(w.get("crops_read", 0) for w in workers),
                "texts_read": sum(w.get("text", 0) for w in workers),
                "history_rows": sum(h.get("rows", 0) for h in history),
                "view_events_dropped": self.counters.events_dropped,
            },
        }

    def initial(self) -> list[tuple[str, dict[str, Any]]]:
        """What a page that opens now is sent first: status, each camera's frame, the recent feed."""
        with self.lock:
            events = [("status", self.status())]
            events += [("frame", self.frame(c, s)) for c, s in self.cameras.items() if s.snapshot is not None]
            events += [("track", raw) for raw in self.feed]
        return events

    def newest_jpeg(self, camera: str) -> bytes | None:
        with self.lock:
            return self.cameras[camera].jpeg


class BusListener(threading.Thread):
    """The one SUB of the view, in its own thread; each page event goes to `deliver` on the loop."""

    def __init__(self, endpoint: str, curve: bus.ClientCurve | None, state: LiveState,
                 loop: asyncio.AbstractEventLoop, deliver: Callable[[str, dict[str, Any]], None]) -> None:
        super().__init__(name="view-bus", daemon=True)
        self.endpoint, self.curve, self.state, self.loop, self.deliver = endpoint, curve, state, loop, deliver
        self.stopping = threading.Event()

    def run(self) -> None:
        sock = bus.subscriber(zmq.Context.instance(), self.endpoint, TOPICS, rcvhwm=RCVHWM, curve=self.curve)
        try:
            while not self.stopping.is_set():
                if sock.poll(POLL_MS, zmq.POLLIN):
                    self.take(sock.recv_multipart())
        finally:
            sock.close()

    def take(self, frames: list[bytes]) -> None:
        try:
            if len(frames) == 3:
                name, payload, jpeg = wire.decode_media(frames)
            else:
                (name, payload), jpeg = wire.decode_published(frames), None
            event = self.state.take(name, payload, jpeg)
        except wire.WireError:
            self.state.counters.rejected += 1
            return
        if event is not None:
            self.loop.call_soon_threadsafe(self.deliver, *event)

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=2.0)
