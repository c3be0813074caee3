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
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

import structlog
import zmq

from textwatch import bus, metrics, wire
from textwatch.config import Settings
from textwatch.errors import ExitCode, TextwatchError
from textwatch.log import get_logger
from textwatch.tracking.trackbook import TrackBook

N = TypeVar("N")  # an internal notice type

NAME = "publisher"
AGGREGATED_TOPIC = b"\x01" + wire.TOPIC_TEXT.encode() + b"."  # our own subscription on the XSUB
STATS_TOPIC = b"\x01" + wire.TOPIC_STATS.encode()  # ours too while metrics are enabled
NOTICE_PREFIX = wire.TOPIC_TRACK_NOTICE.encode() + b"."  # internal: consumed here, never forwarded
FRAME_NOTICE_PREFIX = wire.TOPIC_FRAME_NOTICE.encode() + b"."  # internal: consumed here, never forwarded
LOST_AFTER_TIMEOUTS = 15  # a sent frame none of whose crops came back is lost after this many frame timeouts
MAX_PENDING_FRAMES = 1024  # frames being collected; 5 fps x 2 s timeout x 100 cameras fits
MAX_REGIONS = 10_000  # a text result claiming more regions per frame is rejected (memory bound)
BATCH = 256  # messages forwarded per poll wake-up before looking at subscriptions and deadlines
POLL_MS = 100  # longest sleep: how quickly stop is seen


@dataclass
class _Pending:
    camera: str
    seq: int
    ts: float
    regions: int
    deadline: float
    results: dict[int, wire.TextResult] = field(default_factory=dict)


UNPREFIXED = ("frames", "regions_missing")  # aggregator counters whose stats key is their own name


@dataclass
class AggregatorCounters:
    frames: int = 0  # frames published with every region read
    incomplete: int = 0  # frames published at their deadline with regions missing
    evicted: int = 0  # frames published early (incomplete) because MAX_PENDING was reached
    duplicates: int = 0  # a region that arrived twice (the second is ignored)
    late: int = 0  # a region whose frame was already published (ignored)
    lost: int = 0  # frames sent to the pool none of whose regions came back (published incomplete)
    regions_missing: int = 0  # regions of published frames never read: lost with a worker, or past the deadline


class FrameAggregator:
    """Collects a frame's text results and emits its FrameResult once, when complete or due.

    Times are wall-clock UNIX seconds (`now`), the same clock as the capture `ts`,
    so latency_ms is capture-to-publish. A frame's deadline is timeout_s after its
    first region arrived (not after capture: a backlog of OCR must not make every
    frame time out before its first region is read). Memory is bounded: at most
    `max_pending` frames are collected, and the keys of the last `max_pending`
    published frames are remembered to recognise late regions.
    """

    def __init__(self, timeout_s: float, max_pending: int = MAX_PENDING_FRAMES) -> None:
        self.timeout_s = timeout_s
        self.max_pending = max_pending
        self.counters = AggregatorCounters()
        self._pending: OrderedDict[tuple[str, int], _Pending] = OrderedDict()  # by first arrival
        self._done: OrderedDict[tuple[str, int], None] = OrderedDict()
        # Frames detect announced (FrameNotice) of which no region arrived yet, by announcement.
        # Their deadline is long (LOST_AFTER_TIMEOUTS): a backlog in the pool is not a loss.
        self._expected: OrderedDict[tuple[str, int], _Pending] = OrderedDict()

    def __len__(self) -> int:
        return len(self._pending)

    def expect(self, notice: wire.FrameNotice, now: float) -> list[wire.FrameResult]:
        """Detect sent this frame's crops; returns the frames this loses (usually none).

        A notice may arrive after the frame's first region (they come from
        different processes); then the frame is already pending and nothing
        changes. A frame of which the pool took no crop at all is lost at once;
        the oldest expected frame is lost when max_pending are expected.
        """
        key = (notice.camera, notice.seq)
        if key in self._done or key in self._pending or key in self._expected:
            return []
        out = []
        if len(self._expected) >= self.max_pending:
            out.append(self._lose(next(iter(self._expected)), now))
        deadline = now + LOST_AFTER_TIMEOUTS * self.timeout_s
        self._expected[key] = _Pending(notice.camera, notice.seq, notice.ts, notice.regions, deadline)
        if notice.sent == 0:
            out.append(self._lose(key, now))
        return out

    def add(self, result: wire.TextResult, now: float) -> list[wire.FrameResult]:
        """Take one region; returns the frames this completes or evicts (usually none or one)."""
        key = (result.camera, result.seq)
        if key in self._done:
            self.counters.late += 1
            return []
        self._expected.pop(key, None)  # its first region arrived: the normal deadline applies
        out: list[wire.FrameResult] = []
        frame = self._pending.get(key)
        if frame is None:
            if len(self._pending) >= self.max_pending:
                out.append(self._emit(next(iter(self._pending)), now))
                self.counters.evicted += 1
            frame = _Pending(result.camera, result.seq, result.ts, max(1, result.regions), now + self.timeout_s)
            self._pending[key] = frame
        if result.region in frame.results:
            self.counters.duplicates += 1
        else:
            frame.results[result.region] = result
        if len(frame.results) >= frame.regions:
            self.counters.frames += 1
            out.append(self._emit(key, now))
        return out

    def expire(self, now: float) -> list[wire.FrameResult]:
        """Frames whose deadline passed, as incomplete FrameResults with their `missing` indices."""
        out = []
        while self._pending:
            key, frame = next(iter(self._pending.items()))
            if frame.deadline > now:
                break
            self.counters.incomplete += 1
            out.append(self._emit(key, now))
        while self._expected and next(iter(self._expected.values())).deadline <= now:
            out.append(self._lose(next(iter(self._expected)), now))
        return out

    def flush(self, now: float) -> list[wire.FrameResult]:
        """Every pending frame, incomplete, and every expected one, lost (on shutdown)."""
        out = []
        while self._pending:
            self.counters.incomplete += 1
            out.append(self._emit(next(iter(self._pending)), now))
        while self._expected:
            out.append(self._lose(next(iter(self._expected)), now))
        return out

    def next_deadline(self) -> float | None:
        deadlines = [frames[next(iter(frames))].deadline for frames in (self._pending, self._expected) if frames]
        return min(deadlines) if deadlines else None

    def _lose(self, key: tuple[str, int], now: float) -> wire.FrameResult:
        """An expected frame none of whose regions came back: published incomplete, every region missing."""
        self._pending[key] = self._expected.pop(key)
        self.counters.lost += 1
        return self._emit(key, now)

    def _emit(self, key: tuple[str, int], now: float) -> wire.FrameResult:
        frame = self._pending.pop(key)
        self._done[key] = None
        while len(self._done) > self.max_pending:
            self._done.popitem(last=False)
        indices = sorted(frame.results)
        missing = [i for i in range(frame.regions) if i not in frame.results]
        self.counters.regions_missing += len(missing)
        return wire.FrameResult(
            camera=frame.camera,
            seq=frame.seq,
            ts=frame.ts,
            regions=[asdict(frame.results[i]) for i in indices],
            missing=missing,
            complete=not missing,
            latency_ms=round((now - frame.ts) * 1000.0, 2),
        )


@dataclass
class PublisherCounters:
    forwarded: int = 0  # messages passed from producers to subscribers
    rejected: int = 0  # malformed messages from producers, dropped
    subscriptions: int = 0  # subscribe/unsubscribe messages passed upstream


class Publisher:
    """The proxy's sockets and state; `run_publisher` drives it."""

    def __init__(self, settings: Settings, endpoints: bus.Endpoints, ctx: zmq.Context) -> None:
        self.settings = settings
        self.counters = PublisherCounters()
        self.started = time.time()
        self.aggregator = FrameAggregator(settings.pipeline.frame_timeout_s)
        self.log = get_logger()
        self.exporter: metrics.Exporter | None = None
        # CURVE on the tcp binds (publish, pool_results) when keys are configured;
        # ipc binds stay plain. The authenticator runs before anything binds.
        curve = bus.ServerCurve.from_settings(settings)
        remote = [e for e in endpoints.result_binds + endpoints.publish_binds if not bus.is_local(e)]
        self.authenticator = bus.start_authenticator(ctx, curve) if curve is not None and remote else None
        # Upstream: no HWM games; we drain it as fast as we can. LINGER 0: a
        # subscription not yet sent upstream is worthless after exit.
        self.xsub = bus.make_socket(ctx, zmq.XSUB, linger_ms=bus.NO_LINGER_MS)
        # Downstream: a slow subscriber loses messages past publish_hwm (XPUB drops
        # per pipe); capture and the other subscribers never wait for it.
        self.xpub = bus.make_socket(
            ctx, zmq.XPUB, linger_ms=bus.PUBLISH_LINGER_MS, sndhwm=settings.bus.publish_hwm
        )
        try:
            bus.bind(self.xsub, endpoints.result_binds, curve)
            bus.bind(self.xpub, endpoints.publish_binds, curve)
        except (zmq.ZMQError, TextwatchError):
            self.close()
            raise
        self.xsub.send(AGGREGATED_TOPIC)
        self.xsub.send(b"\x01" + NOTICE_PREFIX)
        self.xsub.send(b"\x01" + FRAME_NOTICE_PREFIX)
        self.tracks = TrackBook(settings)
        self.exporter = self.start_exporter(settings) if settings.metrics.enabled else None

    def start_exporter(self, settings: Settings) -> metrics.Exporter | None:
        """The Prometheus endpoint; a taken port is logged as an error and the data path runs on without it."""
        exporter = metrics.Exporter(settings)
        try:
            exporter.serve()
        except OSError as err:
            self.log.error("metrics_listen_failed", listen=settings.metrics.listen, error=str(err))
            return None
        self.xsub.send(STATS_TOPIC)
        self.log.info("metrics_serving", listen=settings.metrics.listen)
        return exporter

    def close(self) -> None:
        if self.exporter is not None:
            self.exporter.close()
        self.xsub.close()
        self.xpub.close()
        if self.authenticator is not None:  # after the sockets: its thread owns a socket of ctx
            self.authenticator.stop()
            self.authenticator = None

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
            if not name.startswith(wire.TOPIC_TEXT + "."):
                if name == wire.TOPIC_STATS and self.exporter is not None:
                    self.exporter.observe_stats(payload, time.time() if now is None else now)
                return True, None
            result = wire.text_result_from_dict(payload)
            if name != wire.topic(wire.TOPIC_TEXT, result.camera):
                raise wire.WireError(f"topic {name!r} does not match camera {result.camera!r}")
            if not 0 <= result.region < result.regions <= MAX_REGIONS:
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
        agg = self.aggregator
        stats = {"process": NAME, "role": "publisher", "ts": now, **asdict(self.counters)}
        stats.update({k if k in UNPREFIXED else f"frames_{k}": v for k, v in asdict(agg.counters).items()})
        stats["frames_pending"] = len(agg)
        stats["tracks_live"] = len(self.tracks)
        stats.update(metrics.process_fields(self.started))
        if self.exporter is not None:
            self.exporter.observe_stats(stats, now)
            self.exporter.forget_stale(now)
        self.publish(wire.TOPIC_STATS, stats)

    def sleep_ms(self, now: float) -> int:
        deadline = self.aggregator.next_deadline()
        if deadline is None:
            return POLL_MS
        return max(0, min(POLL_MS, int((deadline - now) * 1000) + 1))


def run_publisher(settings: Settings, endpoints: bus.Endpoints, stop: threading.Event | None = None) -> int:
    """Forward, validate and aggregate until stopped (stop event, SIGTERM or SIGINT); returns 0."""
    stop = stop or threading.Event()
    restore = bus.stop_on_signals(stop)
    bus.set_process_title(f"textwatch: {NAME}")
    structlog.contextvars.bind_contextvars(process=NAME)
    try:
        publisher = Publisher(settings, endpoints, zmq.Context.instance())
    except TextwatchError as err:  # unusable CURVE keys: a config error, exit 78, not a crash to restart
        restore()
        get_logger().error("publisher_start_failed", error=str(err), code=int(err.exit_code))
        return int(err.exit_code)
    try:
        publisher.log.info("publisher_started", results=endpoints.result_binds, publish=endpoints.publish_binds)
        _loop(publisher, settings.pipeline.stats_interval_s, stop)
        now = time.time()
        publisher.drain_notices(now)  # results and notices sent last, before frames are closed
        for frame in publisher.aggregator.flush(now):
            publisher.publish(wire.TOPIC_FRAME, frame, frame.camera)
        publisher.publish_tracks(publisher.tracks.flush())
        publisher.publish_stats(now)
        publisher.log.info("publisher_stopped", **asdict(publisher.counters))
        return int(ExitCode.OK)
    finally:
        restore()
        publisher.close()


def _loop(publisher: Publisher, stats_interval_s: float, stop: threading.Event) -> None:
    poller = zmq.Poller()
    poller.register(publisher.xsub, zmq.POLLIN)
    poller.register(publisher.xpub, zmq.POLLIN)
    next_stats = time.monotonic() + stats_interval_s
    while not stop.is_set():
        ready = dict(poller.poll(publisher.sleep_ms(time.time())))
        if publisher.xpub in ready:
            publisher.pump_upstream()
        if publisher.xsub in ready:
            publisher.pump_downstream(time.time())
        publisher.expire(time.time())
        if time.monotonic() >= next_stats:
            publisher.publish_stats(time.time())
            next_stats = time.monotonic() + stats_interval_s
