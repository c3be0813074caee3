"""The history process: every consolidated track, with its best crop picture, into SQLite.

    publisher XPUB (publish.ipc) --SUB track., crop.--> history --> history/store.py (SQLite, WAL)

It subscribes to track.<camera> (appeared / changed / gone, with the
consolidated text) and crop.<camera> (the JPEG of a tracked region sent to
OCR, media.py) on the publisher's local ipc endpoint, and writes what arrived
in one transaction per step (at most BATCH messages or POLL_MS), so a killed
history process loses nothing it committed and, restarted by the supervisor,
takes up again where the bus is (tracks are keyed by camera, track id and
first seen, so the next event of a track it already wrote updates that row).

A track gets a row once it has a text (its first `changed` event); its
pictures may arrive before that and wait in memory (at most
history.max_pending_crops, oldest dropped first, counted); a track gone
without a text drops its pictures (counted). Of a track's pictures the
largest box is kept. Retention (history.retention_days, history.retention_mb)
is enforced at start and every RETENTION_EVERY_S.

Like every producer it publishes its stats (wire.HistoryStats) into the
publisher, which passes them to subscribers and the Prometheus exporter.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass

import zmq

from textwatch import bus, wire
from textwatch.config import Settings
from textwatch.history.store import HistoryStore, database_path
from textwatch.log import get_logger
from textwatch.metrics import rss_bytes
from textwatch.processes import child
from textwatch.processes.child import Process

NAME = "history"
TOPICS = (wire.TOPIC_TRACK + ".", wire.TOPIC_CROP + ".")
POLL_MS = 100
BATCH = 500  # messages written in one transaction
RCVHWM = 10_000  # our queue on the publisher's XPUB is bus.publish_hwm; this is the local side
RETENTION_EVERY_S = 60.0


@dataclass
class HistoryCounters:
    tracks_written: int = 0
    crops_written: int = 0
    crops_dropped: int = 0
    deleted_age: int = 0
    deleted_size: int = 0
    rejected: int = 0


@dataclass(frozen=True)
class Picture:
    ts: float
    area: int
    jpeg: bytes


class HistoryProcess(Process):
    """Subscribe to tracks and crop pictures; write them in batches; enforce retention."""

    role = "history"

    def __init__(self, settings: Settings, endpoints: bus.Endpoints, name: str, stop: threading.Event) -> None:
        super().__init__(settings, endpoints, name, stop)
        self.log = get_logger()
        self.counters = HistoryCounters()
        self.started = time.time()
        self.path = database_path(settings.history)
        self.store = HistoryStore(self.path)  # ConfigError (exit 78) when the file cannot be made or read
        self.rows: dict[tuple[str, int], int] = {}  # live (camera, track) -> row id
        self.pending: OrderedDict[tuple[str, int], Picture] = OrderedDict()
        self.context = zmq.Context()
        self.sub = bus.subscriber(self.context, endpoints.publish_local, TOPICS, rcvhwm=RCVHWM)
        self.pub = bus.result_publisher(self.context, endpoints.results)
        self.next_retention = 0.0
        self.next_stats = time.monotonic() + settings.pipeline.stats_interval_s
        self.log.info("history_started", database=str(self.path), rows=self.store.rows())

    def step(self) -> None:
        """Wait for messages, write what came in one transaction, then retention and stats when due."""
        messages = self.receive()
        if messages:
            self.write(messages)
        now = time.monotonic()
        if now >= self.next_retention:
            self.enforce_retention()
            self.next_retention = now + RETENTION_EVERY_S
        if now >= self.next_stats:
            self.publish_stats()
            self.next_stats = now + self.settings.pipeline.stats_interval_s

    def receive(self) -> list[list[bytes]]:
        if not self.sub.poll(POLL_MS, zmq.POLLIN):
            return []
        messages = []
        for _ in range(BATCH):
            try:
                messages.append(self.sub.recv_multipart(zmq.NOBLOCK))
            except zmq.Again:
                break
        return messages

    def write(self, messages: list[list[bytes]]) -> None:
        """One transaction for the batch: it commits whole or not at all."""
        self.store.begin()
        try:
            for frames in messages:
                self.take(frames)
            self.store.commit()
        except BaseException:
            self.store.rollback()
            raise

    def take(self, frames: list[bytes]) -> None:
        try:
            if len(frames) == 3:
                _, header, jpeg = wire.decode_media(frames)
                self.take_picture(wire.crop_image_from_dict(header), jpeg)
            else:
                _, payload = wire.decode_published(frames)
                self.take_track(wire.track_event_from_dict(payload))
        except wire.WireError as err:
            self.counters.rejected += 1
            self.log.warning("message_rejected", reason=str(err))

    def take_track(self, event: wire.TrackEvent) -> None:
        key = (event.camera, event.track)
        if event.text or key in self.rows:
            row = self.store.upsert_track(event)
            self.counters.tracks_written += 1
            self.rows[key] = row
            picture = self.pending.pop(key, None)
            if picture is not None:
                self.store_picture(row, picture)
        if event.event == "gone":
            self.rows.pop(key, None)
            if self.pending.pop(key, None) is not None:
                self.counters.crops_dropped += 1  # the track never got a text

    def take_picture(self, header: wire.CropImageHeader, jpeg: bytes) -> None:
        x1, y1, x2, y2 = header.box
        picture = Picture(header.ts, max(0, x2 - x1) * max(0, y2 - y1), jpeg)
        key = (header.camera, header.track)
        row = self.rows.get(key)
        if row is not None:
            self.store_picture(row, picture)
            return
        held = self.pending.get(key)
        if held is None or picture.area >= held.area:
            self.pending[key] = picture
            self.pending.move_to_end(key)
        while len(self.pending) > self.settings.history.max_pending_crops:
            self.pending.popitem(last=False)
            self.counters.crops_dropped += 1

    def store_picture(self, row: int, picture: Picture) -> None:
        if self.store.put_crop(row, picture.ts, picture.area, picture.jpeg):
            self.counters.crops_written += 1

    def enforce_retention(self) -> None:
        history = self.settings.history
        result = self.store.enforce_retention(time.time(), history.retention_days, history.retention_mb)
        self.counters.deleted_age += result.deleted_age
        self.counters.deleted_size += result.deleted_size
        if result.deleted_age or result.deleted_size:
            self.rows.clear()  # a live track's row may be gone; its next event writes it again
            self.log.info("history_retention", deleted_age=result.deleted_age, deleted_size=result.deleted_size)

    def publish_stats(self) -> None:
        stats = wire.HistoryStats(
            process=self.name, ts=time.time(), **asdict(self.counters), rows=self.store.rows(),
            db_bytes=self.store.used_bytes(), started=self.started, rss_bytes=rss_bytes(),
        )
        try:
            self.pub.send_multipart(wire.encode_published(wire.TOPIC_STATS, stats), zmq.NOBLOCK)
        except zmq.Again:
            pass  # only while the publisher is stalled; the next stats carry the same counters
        bus.drain_subscriptions(self.pub)

    def finish(self) -> int:
        """Take what is still queued (the publisher's last gone events), then final stats."""
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline and (messages := self.receive()):
            self.write(messages)
        self.publish_stats()
        return 0

    def close(self) -> None:
        self.sub.close()
        self.pub.close(linger=500)
        self.context.term()
        self.store.close()


if __name__ == "__main__":
    raise SystemExit(child.main(HistoryProcess, NAME))
