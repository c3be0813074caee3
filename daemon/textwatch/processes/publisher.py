"""The publisher process: the XSUB/XPUB proxy every result passes, and the frame aggregator.

    our processes (workers, detect) --PUB--> XSUB [results]      --+ admit, stamp, forward, aggregate
    remote workers ---------------PUB--> XSUB [pool_results] --+
    subscribers <--SUB-- XPUB [publish, publish_local] <--------+-- frame.<camera>, track.<camera>, stats

Not `zmq.proxy`: that can be neither stopped nor inspected. A poll loop takes
what producers send, decides what it may be (the trust boundary: below),
validates it (a malformed or refused message is counted and dropped, never
forwarded), stamps it with a per-topic sequence number (`topic_seq`, so a
subscriber sees its own gaps), forwards it, and feeds every text.<camera>
result into the FrameAggregator and the TrackBook.

What may arrive is decided by the socket it arrives on:
  results (ipc, our own user's processes, who could do anything anyway):
      LOCAL_KINDS and stats; an unknown topic is refused.
  pool_results (tcp, remote workers; CURVE unless bus.pool_plaintext_loopback):
      only text.<camera> results for a region detect handed to the pool and
      no result filled yet (FrameAggregator.awaits; a result that arrives before
      its frame's notice waits up to HOLD_S), and stats of role "worker" under
      a name that no local process uses. Anything else is refused, counted by
      reason (`refused` in stats, textwatch_messages_refused_total), and logged
      at most once per LOG_EVERY_S per reason with the count.

Subscriptions stay here: the XSUBs subscribe to everything once, and a subscriber's topic filter
is applied by the XPUB alone, never forwarded to the producers, so a flood of
subscriptions costs the producers nothing. The XPUB refuses a subscription
longer than any topic (bus.MAX_SUBSCRIPTION_BYTES, the connection is dropped)
and the publisher counts the distinct ones held (`subscriptions_active`).

With metrics.enabled the metrics.Exporter turns every process's stats and
every text result into Prometheus metrics, served over HTTP on
metrics.listen from a thread of this process.

Backpressure: none, on purpose. XPUB SNDHWM = bus.publish_hwm messages per
subscriber; a subscriber that reads too slowly misses messages once its queue
is full (it sees the jump in topic_seq), the others and the capture side are
never stalled by it. No ZeroMQ heartbeat cuts off a paused subscriber (bus.py).
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
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
# Each XSUB's one subscription: everything, once. A producer's filter is no defence (a forger's
# client need not apply it), so what may pass is decided here, per socket, after receiving.
ALL_TOPICS = b""
NOTICE_PREFIX = wire.TOPIC_TRACK_NOTICE.encode() + b"."  # internal: consumed here, never forwarded
FRAME_NOTICE_PREFIX = wire.TOPIC_FRAME_NOTICE.encode() + b"."  # internal: consumed here, never forwarded
# What our own processes may publish: workers text.*, detect event.*, frame.* (a frame with nothing
# detected), the internal notices and the pictures, every process stats; and track.*, which only the
# TrackBook here makes today, for same-user tools that replay tracks. An unknown topic is refused.
LOCAL_KINDS = frozenset({
    wire.TOPIC_TEXT, wire.TOPIC_EVENT, wire.TOPIC_FRAME, wire.TOPIC_TRACK, wire.TOPIC_TRACK_NOTICE,
    wire.TOPIC_FRAME_NOTICE, *wire.MEDIA_TOPICS,
})
# Names of our own processes (supervisor.child_specs): a remote worker may not report stats as one.
LOCAL_NAMES = re.compile(r"publisher|history|mqtt|supervisor|ocr-\d+|detect-\d+")
BATCH = 256  # messages forwarded per poll wake-up before looking at subscriptions and deadlines
POLL_MS = 100  # longest sleep: how quickly stop is seen
HOLD_S = 2.0  # a remote result may arrive before its frame's notice (another process): it waits this long
MAX_HELD = 1024  # remote results waiting for their notice; past it the oldest is refused
LOG_EVERY_S = 10.0  # a refusal reason is logged at most this often, with how many since
# Distinct topic prefixes all subscribers together may hold, and their bytes. libzmq keeps every
# subscription of every connection (about 3.7 KB for an 80-byte topic, measured: ~46 bytes per
# character) and offers no way to cap or drop one connection, so past either bound the publisher
# drops every subscriber at once by making its XPUB anew: real subscribers reconnect within a
# second and subscribe again (their topic_seq shows the gap), a flood starts over from nothing.
# Real use holds a few per subscriber; the topics there are (7 kinds x cameras, and their
# prefixes) stay far below it. Worst case held: MAX_SUBSCRIBED_BYTES x 46, about 7 MB.
MAX_SUBSCRIPTIONS = 2000
MAX_SUBSCRIBED_BYTES = MAX_SUBSCRIPTIONS * wire.MAX_TOPIC_BYTES


@dataclass
class PublisherCounters:
    forwarded: int = 0  # messages passed from producers to subscribers
    rejected: int = 0  # malformed messages from producers, dropped
    subscriptions: int = 0  # subscribe/unsubscribe messages from subscribers
    subscriptions_active: int = 0  # gauge: distinct topic prefixes subscribers hold
    subscriber_resets: int = 0  # every subscriber dropped at once: more than MAX_SUBSCRIPTIONS were held
    refused: Counter[str] = field(default_factory=Counter)  # well-formed but not allowed here, by reason


class Refusals:
    """Refused messages: counted by reason, logged at most once per LOG_EVERY_S per reason.

    A forger can send thousands of messages a second; one log line each would
    bury the log and cost more than the message, so the count carries the volume.
    """

    def __init__(self, counts: Counter[str], log: Any) -> None:
        self.counts = counts
        self.log = log
        self.logged: dict[str, tuple[float, int]] = {}  # reason -> (when last logged, count then)

    def refuse(self, reason: str, source: str, topic: str) -> None:
        self.counts[reason] += 1
        now = time.monotonic()
        when, count = self.logged.get(reason, (-LOG_EVERY_S, 0))
        if now - when >= LOG_EVERY_S:
            self.log.warning("message_refused", reason=reason, source=source, topic=topic[:64],
                             since_last_log=self.counts[reason] - count)
            self.logged[reason] = (now, self.counts[reason])


@dataclass
class HeldResult:
    """A remote result whose frame notice has not arrived yet."""

    until: float  # monotonic
    frames: list[bytes]
    payload: dict[str, Any]
    result: wire.TextResult


class TopicSequences:
    """The next topic_seq of each topic: from 0 at this publisher's start, one per message sent."""

    def __init__(self) -> None:
        self.next: dict[str, int] = {}

    def take(self, topic: str) -> int:
        seq = self.next.get(topic, 0)
        self.next[topic] = seq + 1
        return seq


class Publisher(Process):
    """The proxy: admit, validate, stamp and forward producer messages, aggregate frames, serve metrics."""

    role = "publisher"

    def __init__(self, settings: Settings, endpoints: bus.Endpoints, name: str, stop: threading.Event) -> None:
        super().__init__(settings, endpoints, name, stop)
        self.counters = PublisherCounters()
        self.started = time.time()
        self.aggregator = FrameAggregator(settings.pipeline.frame_timeout_s)
        self.tracks = TrackBook(settings)
        self.sequences = TopicSequences()
        self.log = get_logger()
        self.refusals = Refusals(self.counters.refused, self.log)
        self.held: deque[HeldResult] = deque()
        self.subscribed: set[bytes] = set()  # the distinct topic prefixes subscribers hold
        self.subscribed_bytes = 0  # their length in all
        self.exporter: metrics.Exporter | None = None
        # bus.py makes the sockets and, with CURVE keys, starts the ZAP authenticator first.
        self.proxy = bus.publisher_proxy(zmq.Context.instance(), endpoints, settings)
        self.xsub, self.pool, self.xpub = self.proxy.xsub, self.proxy.pool, self.proxy.xpub
        for sock in (self.xsub, self.pool):
            if sock is not None:
                sock.send(b"\x01" + ALL_TOPICS)
        self.exporter = self.start_exporter(settings) if settings.metrics.enabled else None
        self.poller = zmq.Poller()
        for sock in (self.xsub, self.pool, self.xpub):
            if sock is not None:
                self.poller.register(sock, zmq.POLLIN)
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
        self.log.info("metrics_serving", listen=settings.metrics.listen)
        return exporter

    def step(self) -> None:
        """Sleep until a message or the next frame deadline (at most POLL_MS), take what came, expire, stats."""
        ready = dict(self.poller.poll(self.sleep_ms(time.time())))
        if self.xpub in ready:
            self.take_subscriptions()
        if self.xsub in ready:
            self.pump_local(time.time())
        if self.pool is not None and self.pool in ready:
            self.pump_pool(time.time())
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
        self.log.info("publisher_stopped", forwarded=self.counters.forwarded, rejected=self.counters.rejected,
                      refused=dict(self.counters.refused))
        return int(ExitCode.OK)

    def close(self) -> None:
        if self.exporter is not None:
            self.exporter.close()
        self.proxy.close()

    # ------------------------------------------------------------ subscribers

    def take_subscriptions(self) -> None:
        """Subscription messages (\\x01topic / \\x00topic), counted and kept here: the XPUB filters for
        each subscriber itself, so nothing goes upstream. Without XPUB_VERBOSE only a topic's first
        subscriber and its last unsubscriber are reported, so `subscribed` is the XPUB's own set."""
        for _ in range(BATCH):
            try:
                message = self.xpub.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            self.counters.subscriptions += 1
            prefix = message[1:]
            if message[:1] == b"\x01" and prefix not in self.subscribed:
                self.subscribed.add(prefix)
                self.subscribed_bytes += len(prefix)
            elif message[:1] == b"\x00" and prefix in self.subscribed:
                self.subscribed.discard(prefix)
                self.subscribed_bytes -= len(prefix)
            self.counters.subscriptions_active = len(self.subscribed)
            if len(self.subscribed) > MAX_SUBSCRIPTIONS or self.subscribed_bytes > MAX_SUBSCRIBED_BYTES:
                self.reset_subscribers()
                return

    def reset_subscribers(self) -> None:
        """Drop every subscriber by making the XPUB anew: the only bound libzmq allows on what
        subscriptions cost (MAX_SUBSCRIPTIONS says why). Counted and logged."""
        self.counters.subscriber_resets += 1
        self.log.warning("subscribers_reset", subscriptions=len(self.subscribed), bytes=self.subscribed_bytes,
                         limit=MAX_SUBSCRIPTIONS, limit_bytes=MAX_SUBSCRIBED_BYTES, resets=self.counters.subscriber_resets)
        self.poller.unregister(self.xpub)
        self.xpub.close(linger=0)
        self.xpub = self.proxy.xpub = bus.publish_socket(zmq.Context.instance(), self.endpoints, self.settings, retry_s=2.0)
        self.poller.register(self.xpub, zmq.POLLIN)
        self.subscribed.clear()
        self.subscribed_bytes = 0
        self.counters.subscriptions_active = 0

    # ------------------------------------------------------------ producers

    def pump_local(self, now: float) -> None:
        """Up to BATCH messages from our own processes: notices to the aggregator, the rest forwarded."""
        for _ in range(BATCH):
            try:
                frames = self.xsub.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if frames[0].startswith(NOTICE_PREFIX):
                self.take_notice(frames, now)
            elif frames[0].startswith(FRAME_NOTICE_PREFIX):
                self.take_frame_notice(frames, now)
            else:
                self.take_local(frames, now)

    def take_local(self, frames: list[bytes], now: float) -> None:
        """A message of one of our processes: any LOCAL_KINDS topic or stats, validated, then forwarded."""
        parsed = self.parse(frames, "local")
        if parsed is None:
            return
        name, payload = parsed
        kind = name.split(".", 1)[0]
        if name != wire.TOPIC_STATS and ("." not in name or kind not in LOCAL_KINDS):
            self.refusals.refuse("topic", "local", name)
            return
        self.forward(frames, name, payload, now)

    def pump_pool(self, now: float) -> None:
        """Up to BATCH messages from remote workers: only what `admit_remote` lets in is forwarded."""
        assert self.pool is not None
        for _ in range(BATCH):
            try:
                frames = self.pool.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            parsed = self.parse(frames, "pool")
            if parsed is not None:
                self.admit_remote(frames, *parsed, now)

    def admit_remote(self, frames: list[bytes], name: str, payload: dict[str, Any], now: float) -> None:
        """A remote worker may send text results for regions handed to the pool, and its own stats."""
        if name == wire.TOPIC_STATS:
            if payload.get("role") != "worker" or LOCAL_NAMES.fullmatch(str(payload.get("process", ""))):
                self.refusals.refuse("stats_not_own", "pool", name)
                return
            self.forward(frames, name, payload, now)
            return
        if not name.startswith(wire.TOPIC_TEXT + "."):
            self.refusals.refuse("topic", "pool", name)
            return
        result = self.text_result(name, payload)
        if result is None:
            return
        awaited = self.aggregator.awaits(result)
        if awaited is None:
            self.hold(HeldResult(time.monotonic() + HOLD_S, frames, payload, result))
        elif awaited:
            self.forward(frames, name, payload, now, result)
        else:
            self.refusals.refuse("not_awaited", "pool", name)

    def hold(self, held: HeldResult) -> None:
        if len(self.held) >= MAX_HELD:
            oldest = self.held.popleft()
            self.refusals.refuse("not_announced", "pool", wire.topic(wire.TOPIC_TEXT, oldest.result.camera))
        self.held.append(held)

    def release_held(self, now: float) -> None:
        """Held remote results whose notice came are admitted; those past HOLD_S are refused."""
        waiting: deque[HeldResult] = deque()
        while self.held:
            held = self.held.popleft()
            awaited = self.aggregator.awaits(held.result)
            name = wire.topic(wire.TOPIC_TEXT, held.result.camera)
            if awaited:
                self.forward(held.frames, name, held.payload, now, held.result)
            elif awaited is False:
                self.refusals.refuse("not_awaited", "pool", name)
            elif time.monotonic() >= held.until:
                self.refusals.refuse("not_announced", "pool", name)
            else:
                waiting.append(held)
        self.held = waiting

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
            if self.held:
                self.release_held(now)

    def parse_internal(self, frames: list[bytes], parse: Callable[[dict[str, Any]], N]) -> N | None:
        """An internal notice, or None for a malformed one (counted as rejected and logged)."""
        try:
            _, payload = wire.decode_published(frames)
            return parse(payload)
        except wire.WireError as err:
            self.reject(err)
            return None

    def drain_notices(self, now: float) -> None:
        """At shutdown: take what producers sent last (detect's final gone notices) before closing tracks."""
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline and self.xsub.poll(100, zmq.POLLIN):
            self.pump_local(now)

    # ------------------------------------------------------------ validation

    def parse(self, frames: list[bytes], source: str) -> tuple[str, dict[str, Any]] | None:
        """(topic, payload) of a well-formed published message; None (counted as rejected) otherwise."""
        try:
            return wire.decode_published(frames)
        except wire.WireError as err:
            self.reject(err, source)
            return None

    def text_result(self, name: str, payload: dict[str, Any]) -> wire.TextResult | None:
        """The TextResult of a text.<camera> message whose fields and topic agree; None (rejected) otherwise."""
        try:
            result = wire.text_result_from_dict(payload)
            if name != wire.topic(wire.TOPIC_TEXT, result.camera):
                raise wire.WireError(f"topic {name!r} does not match camera {result.camera!r}")
            if not 0 <= result.region < result.regions <= wire.MAX_REGIONS:
                raise wire.WireError(f"region {result.region} of {result.regions} out of range")
            return result
        except wire.WireError as err:
            self.reject(err)
            return None

    def reject(self, err: wire.WireError, source: str = "local") -> None:
        self.counters.rejected += 1
        self.log.warning("message_rejected", reason=str(err), source=source)

    def forward(
        self, frames: list[bytes], name: str, payload: dict[str, Any], now: float, result: wire.TextResult | None = None
    ) -> None:
        """Validate by kind (stats, text results), stamp and send; a text result also feeds the aggregator."""
        if name == wire.TOPIC_STATS:
            try:
                stats = wire.stats_from_dict(payload)
            except wire.WireError as err:
                self.reject(err)
                return
            if self.exporter is not None:
                self.exporter.observe_stats(stats, now)
        elif name.startswith(wire.TOPIC_TEXT + ".") and result is None:
            result = self.text_result(name, payload)
            if result is None:
                return
        self.send(name, wire.with_topic_seq(frames, payload, self.sequences.take(name)))
        self.counters.forwarded += 1
        if result is not None:
            if self.exporter is not None:
                self.exporter.observe_text(result)
            for frame in self.aggregator.add(result, now):
                self.publish(wire.TOPIC_FRAME, frame, frame.camera)
            self.publish_tracks(self.tracks.read(result, now))

    # ------------------------------------------------------------ our own messages

    def send(self, name: str, frames: list[bytes]) -> None:
        try:
            self.xpub.send_multipart(frames, zmq.NOBLOCK)  # XPUB drops per full pipe; never Again
        except zmq.Again:
            pass

    def publish(self, kind: str, payload: object, camera: str | None = None) -> None:
        name = wire.topic(kind, camera)
        self.send(name, wire.encode_published(kind, payload, camera, topic_seq=self.sequences.take(name)))

    def publish_tracks(self, events: list[wire.TrackEvent]) -> None:
        for event in events:
            self.publish(wire.TOPIC_TRACK, event, event.camera)

    def expire(self, now: float) -> None:
        for frame in self.aggregator.expire(now):
            self.publish(wire.TOPIC_FRAME, frame, frame.camera)
        self.publish_tracks(self.tracks.expire(now))
        if self.held:
            self.release_held(now)

    def publish_stats(self, now: float) -> None:
        c, agg = self.counters, self.aggregator.counters
        stats = wire.PublisherStats(
            process=self.name, ts=now, forwarded=c.forwarded, rejected=c.rejected, subscriptions=c.subscriptions,
            frames=agg.frames, frames_incomplete=agg.incomplete, frames_evicted=agg.evicted,
            frames_duplicates=agg.duplicates, frames_late=agg.late, frames_lost=agg.lost,
            regions_missing=agg.regions_missing, frames_pending=len(self.aggregator), tracks_live=len(self.tracks),
            started=self.started, rss_bytes=metrics.rss_bytes(),
            refused=dict(c.refused), subscriptions_active=c.subscriptions_active, results_held=len(self.held),
            subscriber_resets=c.subscriber_resets,
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
