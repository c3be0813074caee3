"""What systemd sees of the daemon: sd_notify spoken directly, and liveness by progress.

sd_notify(3) is one datagram of `KEY=VALUE` lines sent to the AF_UNIX socket
named by `$NOTIFY_SOCKET` (a path, or an abstract name written with a leading
`@`). No python-systemd dependency: `notify()` builds and sends that datagram,
and does nothing when the variable is unset (not running under systemd, or a
unit without Type=notify).

The watchdog (`WatchdogSec=` in the unit) is armed when `$WATCHDOG_USEC` is set
and `$WATCHDOG_PID` is unset or our pid; we ping at half the interval, and only
while `Progress` says the pipeline moves (docs/operations.md, "Watchdog"):

    ready   every local worker has published stats, and detect has published
            stats with frames > 0, or has kept publishing for longer than the
            cameras' open_timeout_s (a camera down at boot does not hold the
            start back: READY with STATUS "cameras 0/1 up").
    alive   within the last watchdog interval: detect published stats, every
            local worker published stats, and frames or crops_read grew;
            unless no camera is up, in which case detect publishing stats
            (reconnecting with backoff) is enough.

A wedged pipeline is therefore: detect silent (stuck in a forward, a stuck
publisher, a stopped process), a worker silent (stuck in Tesseract), or a
camera that says up while no frame moves.
"""

from __future__ import annotations

import os
import socket
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import zmq

from textwatch import bus, wire
from textwatch.config import Settings


def notify(**fields: object) -> bool:
    """Send `KEY=VALUE` lines to $NOTIFY_SOCKET: notify(READY=1, STATUS="..."); True if sent.

    False when $NOTIFY_SOCKET is unset. A send error (the socket went away) is
    raised as OSError so the caller can report it.
    """
    address = notify_address()
    if address is None or not fields:
        return False
    message = "\n".join(f"{key}={_one_line(value)}" for key, value in fields.items()).encode()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.sendto(message, address)
    return True


def notify_address() -> str | bytes | None:
    """$NOTIFY_SOCKET as a sendto() address: a path, or b"\\0name" for an abstract `@name`."""
    name = os.environ.get("NOTIFY_SOCKET", "")
    if not name:
        return None
    if name.startswith("@"):
        return b"\0" + name[1:].encode()
    if not name.startswith("/"):
        return None  # vsock: and other kinds are not for a local service
    return name


def watchdog_interval() -> float | None:
    """Seconds of `WatchdogSec=` from $WATCHDOG_USEC, or None when the watchdog is not ours."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid != str(os.getpid()):
        return None
    return int(usec) / 1_000_000


def _one_line(value: object) -> str:
    return " ".join(str(value).split())


# ---------------------------------------------------------------- progress

RATE_WINDOW_S = 10.0  # frames/s and crops/s in STATUS= are averaged over this long
STATUS_EVERY_S = 5.0  # STATUS= is sent at most this often, unless the pipeline stalls or recovers


@dataclass
class Counter:
    """One counter from stats: its value, when it last grew and was last reported, and the
    total it grew by, which keeps growing across restarts of its process (it starts again at 0)."""

    value: int = -1
    grew_at: float = float("-inf")
    seen_at: float = float("-inf")
    total: int = 0

    def update(self, value: int, now: float) -> None:
        previous = max(self.value, 0) if value >= self.value else 0  # a restarted process counts from 0
        if value > previous:
            self.grew_at = now
            self.total += value - previous
        self.value = value
        self.seen_at = now


@dataclass
class Progress:
    """Liveness of the pipeline from the `stats` messages on the bus (docs/protocol.md)."""

    workers: tuple[str, ...]  # the local worker names: ocr-0, ocr-1, ...
    ready_wait_s: float  # how long READY waits for a first frame once detect reports
    frames: Counter = field(default_factory=Counter)
    crops_read: dict[str, Counter] = field(default_factory=dict)
    detect_first_seen: float | None = None
    cameras_up: int = 0
    cameras_total: int = 0
    samples: deque[tuple[float, int, int]] = field(default_factory=deque)  # (time, frames, crops read)

    def observe(self, stats: wire.Stats, now: float) -> None:
        """Take one stats message; stats of other processes (publisher, remote workers) are ignored."""
        if isinstance(stats, wire.DetectStats):
            self._observe_detect(stats, now)
        elif isinstance(stats, wire.WorkerStats) and stats.process in self.workers:
            self.crops_read.setdefault(stats.process, Counter()).update(stats.crops_read, now)

    def _observe_detect(self, stats: wire.DetectStats, now: float) -> None:
        if self.detect_first_seen is None:
            self.detect_first_seen = now
        self.frames.update(stats.frames, now)
        self.cameras_total = len(stats.cameras)
        self.cameras_up = sum(1 for camera in stats.cameras.values() if camera.up)
        self._sample_rates(now)

    def _sample_rates(self, now: float) -> None:
        self.samples.append((now, self.frames.total, self.total_crops_read()))
        while len(self.samples) > 2 and now - self.samples[1][0] >= RATE_WINDOW_S:
            self.samples.popleft()

    def rates(self) -> tuple[float, float]:
        """Frames/s and crops/s over the last RATE_WINDOW_S (or what has been seen of it)."""
        (then, frames, crops), (now, frames_now, crops_now) = self.samples[0], self.samples[-1]
        span = now - then
        if span <= 0:
            return 0.0, 0.0
        return (frames_now - frames) / span, (crops_now - crops) / span

    def total_crops_read(self) -> int:
        return sum(c.total for c in self.crops_read.values())

    # ------------------------------------------------------------ verdicts

    def ready(self, now: float) -> bool:
        """Every local worker reported, and detect saw a frame (or waited ready_wait_s for cameras)."""
        if self.detect_first_seen is None or set(self.crops_read) != set(self.workers):
            return False
        return self.frames.value > 0 or now - self.detect_first_seen >= self.ready_wait_s

    def stalled(self, now: float, window: float) -> str | None:
        """Why the pipeline made no progress within `window` seconds, or None when it did."""
        if now - self.frames.seen_at > window:
            return "no stats from detect"
        silent = [name for name in self.workers if now - self.crops_read.get(name, Counter()).seen_at > window]
        if silent:
            return f"no stats from {', '.join(silent)}"
        if self.cameras_up == 0:
            return None  # every source down: detect keeps reconnecting, which is all it can do
        moved = max(self.frames.grew_at, *(c.grew_at for c in self.crops_read.values()))
        if now - moved > window:
            return f"no frame or crop progress while {self.cameras_up} camera(s) up"
        return None

    def status(self, worker_restarts: int) -> str:
        """One line for STATUS=: cameras, rates, restarts."""
        frames, crops = self.rates() if self.samples else (0.0, 0.0)
        return (
            f"cameras {self.cameras_up}/{self.cameras_total} up, {frames:.1f} frames/s, "
            f"{crops:.1f} crops/s, {worker_restarts} worker restarts"
        )


@dataclass
class Watchdog:
    """When to ping: every half interval, and only while `Progress.stalled` is None."""

    interval: float
    next_ping: float = 0.0

    def due(self, now: float) -> bool:
        return now >= self.next_ping

    def pinged(self, now: float) -> None:
        self.next_ping = now + self.interval / 2


# ---------------------------------------------------------------- the supervisor's link


def local_address(endpoint: str) -> str:
    """Where a local SUB connects to a bound endpoint: tcp://*:P and 0.0.0.0 become loopback."""
    wildcards = {"tcp://*:": "tcp://127.0.0.1:", "tcp://0.0.0.0:": "tcp://127.0.0.1:", "tcp://[::]:": "tcp://[::1]:"}
    for wildcard, loopback in wildcards.items():
        if endpoint.startswith(wildcard):
            return loopback + endpoint[len(wildcard):]
    return endpoint


# The supervisor's stats SUB reads everything queued at each tick (every 0.2 s);
# stats are a few messages per stats_interval_s, so this bound is never reached
# unless the supervisor itself stalls, and then old stats are worth nothing.
STATS_RCVHWM = 1000
MAX_STATS_PER_TICK = 1000
STATS_RECONNECT_IVL_MAX_MS = 500
# Without WatchdogSec= nothing is pinged, but a stall is still logged and shown in STATUS=.
STALL_WINDOW_S = 30.0


class ServiceNotifier:
    """The supervisor's link to systemd: reads `stats` off the bus, says READY, WATCHDOG, STATUS, STOPPING.

    It owns one SUB socket on the publisher's XPUB (the `publish` endpoint),
    subscribed to `stats` only, read without blocking from the supervisor's loop.
    """

    def __init__(self, settings: Settings, publish_endpoint: str, workers: tuple[str, ...], log: Any) -> None:
        self.log = log
        interval = watchdog_interval()
        self.watchdog = Watchdog(interval) if interval else None
        self.stall_window = interval or STALL_WINDOW_S
        self.progress = Progress(workers=workers, ready_wait_s=max(c.open_timeout_s for c in settings.cameras))
        self.is_ready = False
        self.stall_reason: str | None = None
        self.last_status = ""
        self.next_status = 0.0
        self.notify_failed = False
        self.context = zmq.Context()
        # Loopback reconnects are cheap: after the publisher (re)starts, stats must flow
        # again well within the watchdog interval, not after bus's 5 s backoff cap.
        self.stats = bus.subscriber(
            self.context, local_address(publish_endpoint), [wire.TOPIC_STATS],
            rcvhwm=STATS_RCVHWM, reconnect_ivl_max_ms=STATS_RECONNECT_IVL_MAX_MS,
        )
        if 2 * settings.pipeline.stats_interval_s > self.stall_window:
            log.warning(
                "watchdog_shorter_than_stats", watchdog_s=self.stall_window,
                stats_interval_s=settings.pipeline.stats_interval_s,
                hint="stats must arrive at least twice per WatchdogSec; lower pipeline.stats_interval_s",
            )
        if 2 * settings.pipeline.hung_s > self.stall_window:
            log.warning(
                "watchdog_shorter_than_hung", watchdog_s=self.stall_window, hung_s=settings.pipeline.hung_s,
                hint="a hung child should be replaced before systemd restarts the unit; keep pipeline.hung_s at most half of WatchdogSec",
            )

    @classmethod
    def from_environment(
        cls, settings: Settings, publish_endpoint: str, workers: tuple[str, ...], log: Any
    ) -> ServiceNotifier | None:
        """A notifier when $NOTIFY_SOCKET is set (we run under systemd, Type=notify), else None."""
        if notify_address() is None:
            return None
        return cls(settings, publish_endpoint, workers, log)

    def tick(self, now: float, worker_restarts: int) -> None:
        """One look per supervisor tick: new stats in, then READY, the verdict, WATCHDOG and STATUS as due."""
        self.read_stats(now)
        self.announce_ready(now, worker_restarts)
        self.check_progress(now)
        self.feed_watchdog(now)
        self.update_status(now, worker_restarts)

    def read_stats(self, now: float) -> None:
        for _ in range(MAX_STATS_PER_TICK):
            try:
                frames = self.stats.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                _, body = wire.decode_published(frames)
                self.progress.observe(wire.stats_from_dict(body), now)
            except wire.WireError as err:
                self.log.warning("stats_rejected", error=str(err))

    def announce_ready(self, now: float, worker_restarts: int) -> None:
        if self.is_ready or not self.progress.ready(now):
            return
        self.is_ready = True
        self.last_status = self.progress.status(worker_restarts)
        self.next_status = now + STATUS_EVERY_S
        self.log.info("systemd_ready", status=self.last_status, frames=self.progress.frames.value,
                      workers=len(self.progress.crops_read))
        self.send(READY=1, STATUS=self.last_status, MAINPID=os.getpid())

    def check_progress(self, now: float) -> None:
        """Once READY: is the pipeline moving? A stall is logged when it starts and when it ends."""
        if not self.is_ready:
            return
        reason = self.progress.stalled(now, self.stall_window)
        if reason == self.stall_reason:
            return
        if reason is None:
            self.log.info("pipeline_progressing")
        else:
            self.log.warning("pipeline_stalled", reason=reason, hint="no WATCHDOG=1 until it moves again")
        self.stall_reason = reason

    def feed_watchdog(self, now: float) -> None:
        """WATCHDOG=1 every half interval, only once READY and while the pipeline moves."""
        if self.watchdog is None or not self.is_ready or self.stall_reason is not None or not self.watchdog.due(now):
            return
        self.send(WATCHDOG=1)
        self.watchdog.pinged(now)

    def update_status(self, now: float, worker_restarts: int) -> None:
        """STATUS= when it changed: at once when a stall starts or ends, else at most every STATUS_EVERY_S."""
        if not self.is_ready:
            return
        status = self.progress.status(worker_restarts)
        if self.stall_reason is not None:
            status = f"stalled: {self.stall_reason}; {status}"
        stall_changed = status.startswith("stalled:") != self.last_status.startswith("stalled:")
        if status != self.last_status and (stall_changed or now >= self.next_status):
            self.send(STATUS=status)
            self.last_status = status
            self.next_status = now + STATUS_EVERY_S

    def stopping(self, code: int) -> None:
        self.send(STOPPING=1, STATUS=f"stopping (exit code {code})")

    def send(self, **fields: object) -> None:
        try:
            notify(**fields)
        except OSError as err:
            if not self.notify_failed:  # once: the socket is gone, every later send would fail the same way
                self.log.warning("sd_notify_failed", error=str(err), socket=os.environ.get("NOTIFY_SOCKET"))
            self.notify_failed = True

    def close(self) -> None:
        self.stats.close()
        self.context.term()
