"""The publisher process: the XSUB/XPUB proxy every result passes, and the frame aggregator.

    producers (workers, detect) --PUB--> XSUB [results, pool_results]
                                              |  forward, validate, aggregate
    subscribers <--SUB-- XPUB [publish] <-----+-- frame.<camera> from FrameAggregator

Not `zmq.proxy`: that can be neither stopped nor inspected. A poll loop forwards
messages down and subscriptions up (a subscriber's topic filter reaches the
producers, so unwanted topics are not even sent to us), validates every message
(a malformed one is counted as rejected and dropped, never forwarded) and feeds
every text.<camera> result into the FrameAggregator.

The XSUB always subscribes to "text." itself, so the aggregator sees every read
region even when no subscriber wants text.* (XSUB reference-counts
subscriptions: a subscriber leaving "text." does not cancel ours). With
metrics.enabled it subscribes to "stats" too: the metrics.Exporter turns every
process's stats and every text result into Prometheus metrics, served over
HTTP on metrics.listen from a thread of this process.

The XPUB binds bus.publish and, for local tools such as the supervisor,
ipc publish.ipc in the private runtime folder. With CURVE keys configured the
tcp binds (publish, pool_results) are CURVE servers and this process runs the
ZAP authenticator that checks client keys (bus.py, "CURVE").

Backpressure: none, on purpose. XPUB SNDHWM = bus.publish_hwm messages per
subscriber; a subscriber that reads too slowly misses messages once its queue
is full, the others and the capture side are never stalled by it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

import zmq

from textwatch import bus, metrics, wire
from textwatch.config import Settings
from textwatch.errors import ExitCode
from textwatch.log import get_logger
from textwatch.processes import child
from textwatch.processes.child import Process
from textwatch.tracking.frames import FrameAggregator
from textwatch.tracking.trackbook import TrackBook

N = TypeVar("N")  # an internal notice type

NAME = "publisher"
AGGREGATED_TOPIC = wire.TOPIC_TEXT.encode() + b"."  # our own subscription on the XSUB
STATS_TOPIC = wire.TOPIC_STATS.encode()  # ours too while metrics are enabled
NOTICE_PREFIX = wire.TOPIC_TRACK_NOTICE.encode() + b"."  # internal: consumed here, never forwarded
FRAME_NOTICE_PREFIX = wire.TOPIC_FRAME_NOTICE.encode() + b"."  # internal: consumed here, never forwarded
BATCH = 256  # messages forwarded per poll wake-up before looking at subscriptions and deadlines
POLL_MS = 100  # longest sleep: how quickly stop is seen


@dataclass
class PublisherCounters:
    forwarded: int = 0  # messages passed from producers to subscribers
    rejected: int = 0  # malformed messages from producers, dropped
    subscriptions: int = 0  # subscribe/unsubscribe messages passed upstream


class Publisher(Process):
    """The proxy: validate and forward producer messages, aggregate frames, serve metrics."""

    role = "publisher"

    def __init__(self, settings: Settings, endpoints: bus.Endpoints, name: str, stop: threading.Event) -> None:
        super().__init__(settings, endpoints, name, stop)
        self.counters = PublisherCounters()
        self.started = time.time()
        self.aggregator = FrameAggregator(settings.pipeline.frame_timeout_s)
        self.tracks = TrackBook(settings)
        self.log = get_logger()
        self.exporter: metrics.Exporter | None = None
        # bus.py makes both sockets and, with CURVE keys, starts the ZAP authenticator first.
        self.proxy = bus.publisher_proxy(zmq.Context.instance(), endpoints, settings)
        self.xsub, self.xpub = self.proxy.xsub, self.proxy.xpub
        for prefix in (AGGREGATED_TOPIC, NOTICE_PREFIX, FRAME_NOTICE_PREFIX):
            self.xsub.send(b"\x01" + prefix)
        self.exporter = self.start_exporter(settings) if settings.metrics.enabled else None
        self.poller = zmq.Poller()
        self.poller.register(self.xsub, zmq.POLLIN)
        self.poller.register(self.xpub, zmq.POLLIN)
        self.next_stats = time.monotonic() + settings.pipeline.stats_interval_s
        self.log.info("publisher_started", results=endpoints.result_binds, publish=endpoints.publish_binds)

    def start_exporter(self, settings: Settings) -> metrics.Exporter | None:
        """The Prometheus endpoint; a taken port is logged as an error and the data path runs on without it."""
        exporter = metrics.Exporter(settings)
        try:
            exporter.serve()
        except OSError as err:
            self.log.error("metrics_listen_failed", listen=settings.metrics.listen, error=str(err))
            return None
        self.xsub.send(b"\x01" + STATS_TOPIC)
        self.log.info("metrics_serving", listen=settings.metrics.listen)
        return exporter

    def step(self) -> None:
        """Sleep until a message or the next frame deadline (at most POLL_MS), pump both ways, expire, stats."""
        ready = dict(self.poller.poll(self.sleep_ms(time.time())))
        if self.xpub in ready:
            self.pump_upstream()
        if self.xsub in ready:
            self.pump_downstream(time.time())
        self.expire(time.time())
        if time.monotonic() >= self.next_stats:
            self.publish_stats(time.time())
            self.next_stats = time.monotonic() + self.settings.pipeline.stats_interval_s

    def finish(self) -> int:
        """Take what producers sent last, publish every open frame and track, final stats."""
        now = time.time()
        self.drain_notices(now)  # results and notices sent last, before frames are closed
        for frame in self.aggregator.flush(now):
            self.publish(wire.TOPIC_FRAME, frame, frame.camera)
        self.publish_tracks(self.tracks.flush())
        self.publish_stats(now)
        self.log.info("publisher_stopped", **asdict(self.counters))
        return int(ExitCode.OK)

    def close(self) -> None:
        if self.exporter is not None:
            self.exporter.close()
        self.proxy.close()

    def pump_upstream(self) -> None:
        """Subscriptions from subscribers to the producers (one frame each: \\x01topic / \\x00topic)."""
        for _ in range(BATCH):
            try:
                message = self.xpub.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            self.xsub.send(message)
            self.counters.subscriptions += 1

    def pump_downstream(self, now: float) -> None:
        """Up to BATCH messages from producers: validate, forward, aggregate."""
        for _ in range(BATCH):
            try:
                frames = self.xsub.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if frames[0].startswith(NOTICE_PREFIX):
                self.take_notice(frames, now)
                continue
            if frames[0].startswith(FRAME_NOTICE_PREFIX):
                self.take_frame_notice(frames, now)
                continue
            valid, result = self.check(frames, now)
            if not valid:
                continue
            self.send(frames)
            self.counters.forwarded += 1
            if result is not None:
                for frame in self.aggregator.add(result, now):
                    self.publish(wire.TOPIC_FRAME, frame, frame.camera)
                self.publish_tracks(self.tracks.read(result, now))

    def take_notice(self, frames: list[bytes], now: float) -> None:
        """A tracker notice from detect: into the TrackBook, never to subscribers."""
        notice = self.parse_internal(frames, wire.track_notice_from_dict)
        if notice is not None:
            self.publish_tracks(self.tracks.notice(notice, now))

    def take_frame_notice(self, frames: list[bytes], now: float) -> None:
        """Detect sent a frame's crops: the aggregator expects them, so their loss is counted."""
        notice = self.parse_internal(frames, wire.frame_notice_from_dict)
        if notice is not None:
            for frame in self.aggregator.expect(notice, now):
                self.publish(wire.TOPIC_FRAME, frame, frame.camera)

    def parse_internal(self, frames: list[bytes], parse: Callable[[dict[str, Any]], N]) -> N | None:
        """An internal notice, or None for a malformed one (counted as rejected and logged)."""
        try:
            _, payload = wire.decode_published(frames)
            return parse(payload)
        except wire.WireError as err:
            self.counters.rejected += 1
            self.log.warning("message_rejected", reason=str(err))
            return None

    def drain_notices(self, now: float) -> None:
        """At shutdown: take what producers sent last (detect's final gone notices) before closing tracks."""
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline and self.xsub.poll(100, zmq.POLLIN):
            self.pump_downstream(now)

    def publish_tracks(self, events: list[wire.TrackEvent]) -> None:
        for event in events:
            self.publish(wire.TOPIC_TRACK, event, event.camera)

    def check(self, frames: list[bytes], now: float | None = None) -> tuple[bool, wire.TextResult | None]:
        """(valid, the TextResult of a text.* message); a malformed message is counted as rejected.

        Valid stats and text results are also handed to the exporter, when there is one.
        """
        try:
            name, payload = wire.decode_published(frames)
            if name == wire.TOPIC_STATS:
                stats = wire.stats_from_dict(payload)
                if self.exporter is not None:
                    self.exporter.observe_stats(stats, time.time() if now is None else now)
                return True, None
            if not name.startswith(wire.TOPIC_TEXT + "."):
                return True, None
            result = wire.text_result_from_dict(payload)
            if name != wire.topic(wire.TOPIC_TEXT, result.camera):
                raise wire.WireError(f"topic {name!r} does not match camera {result.camera!r}")
            if not 0 <= result.region < result.regions <= wire.MAX_REGIONS:
                raise wire.WireError(f"region {result.region} of {result.regions} out of range")
            if self.exporter is not None:
                self.exporter.observe_text(result)
            return True, result
        except wire.WireError as err:
            self.counters.rejected += 1
            self.log.warning("message_rejected", reason=str(err))
            return False, None

    def send(self, frames: list[bytes]) -> None:
        try:
            self.xpub.send_multipart(frames, zmq.NOBLOCK)  # XPUB drops per full pipe; never Again
        except zmq.Again:
            pass

    def publish(self, kind: str, payload: object, camera: str | None = None) -> None:
        self.send(wire.encode_published(kind, payload, camera))

    def expire(self, now: float) -> None:
        for frame in self.aggregator.expire(now):
            self.publish(wire.TOPIC_FRAME, frame, frame.camera)
        self.publish_tracks(self.tracks.expire(now))

    def publish_stats(self, now: float) -> None:
        c, agg = self.counters, self.aggregator.counters
        stats = wire.PublisherStats(
            process=self.name, ts=now, forwarded=c.forwarded, rejected=c.rejected, subscriptions=c.subscriptions,
            frames=agg.frames, frames_incomplete=agg.incomplete, frames_evicted=agg.evicted,
            frames_duplicates=agg.duplicates, frames_late=agg.late, frames_lost=agg.lost,
            regions_missing=agg.regions_missing, frames_pending=len(self.aggregator), tracks_live=len(self.tracks),
            started=self.started, rss_bytes=metrics.rss_bytes(),
        )
        if self.exporter is not None:
            self.exporter.observe_stats(stats, now)
            self.exporter.forget_stale(now)
        self.publish(wire.TOPIC_STATS, stats)

    def sleep_ms(self, now: float) -> int:
        deadline = self.aggregator.next_deadline()
        if deadline is None:
            return POLL_MS
        return max(0, min(POLL_MS, int((deadline - now) * 1000) + 1))


if __name__ == "__main__":
    raise SystemExit(child.main(Publisher, NAME))
