"""Capture: one reader thread per camera, keeping only its newest frame.

Sources are V4L2 devices (an index or /dev/videoN), RTSP and HTTP(S) MJPEG
streams (OpenCV's FFmpeg backend, with open and read timeouts) and video files
(looped or not, paced at their own frame rate or read as fast as possible).

A `CameraReader` thread reads frames into a single slot; a new frame replaces
one the consumer has not taken and counts it as skipped, so a slow detector
always works on the present, never on a backlog. `latest()` also caps the
delivered rate at the camera's `max_fps`.

A dead camera is an event, never a stream of black frames: the reader reports
`source_down` (with a reason) through its `on_event` callback, releases the
capture and reopens it with capped exponential backoff and jitter; the first
frame after that reports `source_up`. A stream that delivers nothing for
`stall_s` counts as down even when the socket stays open. A network stream
whose server refuses a TCP connection is down at once (no waiting for
`stall_s`), and while it refuses, the backoff wait is cut short by a cheap TCP
probe the moment the port accepts again, so frames come back about one open
after the source returns however long it was away. A non-looped file
that ends reports `source_down` with reason "end of file" and the thread ends:
the daemon treats that as finished, not as an error.

Camera URLs carry passwords: this module logs and reports a URL only through
`redact_url`.
"""

from __future__ import annotations

import math
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import cv2
import numpy as np

from textwatch.config import CameraSettings
from textwatch.errors import ExitCode, TextwatchError
from textwatch.log import get_logger, redact_url
from textwatch.wire import SourceEvent

SourceKind = Literal["v4l2", "rtsp", "http", "file"]

SOURCE_UP, SOURCE_DOWN = "source_up", "source_down"
END_OF_FILE = "end of file"
FFMPEG_OPTIONS_ENV = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
READ_RETRY_S = 0.05  # pause after a failed read, so a dead stream is never read in a hot loop
FALLBACK_FPS = 25.0  # pacing of files whose container has no usable frame rate
BACKOFF_JITTER = 0.2  # each delay is scaled by a random factor in [1 - j, 1 + j]
PROBE_INTERVAL_S = 0.5  # a refused stream's port is probed (one TCP connect) at most this often
PROBE_TIMEOUT_S = 1.0  # a probe's connect gives up after this long (then: not refused, just slow)
CONNECTION_REFUSED = "(connection refused)"  # ends a down reason when the server refused a TCP connect
DEFAULT_PORTS = {"rtsp": 554, "rtsps": 322, "http": 80, "https": 443}


class SourceUnavailable(TextwatchError):
    """A camera source cannot be opened (its message never contains credentials)."""

    exit_code = ExitCode.NO_INPUT


@dataclass(frozen=True)
class Frame:
    """One captured image; `seq` counts from 0 per camera, `ts` is time.time() at capture."""

    camera: str
    seq: int
    ts: float
    image: np.ndarray


@dataclass
class CaptureCounters:
    """What one reader did since it started; read by stats/metrics.

    frames_read = frames_delivered + frames_skipped + (1 if a frame waits in the slot).
    """

    frames_read: int = 0
    frames_skipped: int = 0
    frames_delivered: int = 0
    reconnects: int = 0
    stalls: int = 0
    read_errors: int = 0
    up: bool = False

    def as_dict(self) -> dict[str, int | bool]:
        return asdict(self)


# ---------------------------------------------------------------- opening sources


def source_kind(url: str) -> SourceKind:
    """Which backend a camera URL needs: V4L2 index/device, RTSP, HTTP(S) or a file."""
    lowered = url.strip().lower()
    if lowered.isdigit() or lowered.startswith("/dev/video"):
        return "v4l2"
    if lowered.startswith(("rtsp://", "rtsps://")):
        return "rtsp"
    if lowered.startswith(("http://", "https://")):
        return "http"
    return "file"


class _FfmpegOptions:
    """Serialises the process-wide OPENCV_FFMPEG_CAPTURE_OPTIONS between concurrent opens.

    OpenCV reads that variable inside each FFmpeg open, and it is the only way to
    choose the RTSP transport. Opens that need the same value may overlap (an open
    can block for open_timeout_s, so they must not queue behind each other); an
    open that needs another value waits, at most `timeout_s`, for them to finish.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._value: str | None = None
        self._users = 0

    @contextmanager
    def using(self, value: str, timeout_s: float) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: self._users == 0 or self._value == value, timeout=timeout_s)
            self._value = value
            self._users += 1
            os.environ[FFMPEG_OPTIONS_ENV] = value
        try:
            yield
        finally:
            with self._cond:
                self._users -= 1
                self._cond.notify_all()


_FFMPEG_OPTIONS = _FfmpegOptions()


def open_source(settings: CameraSettings) -> cv2.VideoCapture:
    """An opened capture for the camera, or SourceUnavailable saying why (URL redacted).

    Network streams get FFmpeg's open and read timeouts, so no call blocks for
    ever. The read timeout is at most `stall_s`: a read blocked longer than that
    is a stall anyway, and the watchdog can only act once the read returns.
    """
    kind = source_kind(settings.url)
    if kind == "v4l2":
        capture = _open_v4l2(settings)
    elif kind == "file":
        capture = _open_file(settings)
    else:
        capture = _open_stream(settings, kind)
    if not capture.isOpened():
        capture.release()
        raise SourceUnavailable(f"cannot open {kind} source {redact_url(settings.url)}")
    return capture


def _ffmpeg_timeouts(settings: CameraSettings) -> list[int]:
    read_s = min(settings.read_timeout_s, settings.stall_s)
    return [
        cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
        max(1, int(settings.open_timeout_s * 1000)),
        cv2.CAP_PROP_READ_TIMEOUT_MSEC,
        max(1, int(read_s * 1000)),
    ]


def _open_stream(settings: CameraSettings, kind: SourceKind) -> cv2.VideoCapture:
    """RTSP or HTTP(S) MJPEG through FFmpeg; RTSP over the configured transport (TCP by default).

    FFmpeg's own analyzeduration (5 s) kept an RTSP open at 2.8 s on the test stream; `probe_s`
    (1 s) bounds how long an open reads before the first frame, so a source that comes back
    gives frames again within about `probe_s` plus one probe interval.
    """
    options = f"rtsp_transport;{settings.rtsp_transport}|analyzeduration;{max(1, int(settings.probe_s * 1_000_000))}"
    try:
        with _FFMPEG_OPTIONS.using(options, timeout_s=settings.open_timeout_s):
            return cv2.VideoCapture(settings.url, cv2.CAP_FFMPEG, _ffmpeg_timeouts(settings))
    except cv2.error as err:
        raise SourceUnavailable(f"{kind} source {redact_url(settings.url)}: {redact_url(str(err))}") from None


def _open_v4l2(settings: CameraSettings) -> cv2.VideoCapture:
    """A V4L2 device by index or path; OpenCV bounds each V4L2 read by its own select timeout."""
    device: int | str = int(settings.url) if settings.url.strip().isdigit() else settings.url.strip()
    try:
        capture = cv2.VideoCapture(device, cv2.CAP_V4L2)
    except cv2.error as err:
        raise SourceUnavailable(f"v4l2 source {redact_url(settings.url)}: {redact_url(str(err))}") from None
    if capture.isOpened():
        # Not every OpenCV build honours it on V4L2; where it does, reads give up sooner.
        capture.set(cv2.CAP_PROP_READ_TIMEOUT_MSEC, _ffmpeg_timeouts(settings)[3])
    return capture


def _open_file(settings: CameraSettings) -> cv2.VideoCapture:
    path = Path(settings.url).expanduser()
    if not path.is_file():
        raise SourceUnavailable(f"file source {redact_url(settings.url)} does not exist")
    try:
        return cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    except cv2.error as err:
        raise SourceUnavailable(f"file source {redact_url(settings.url)}: {redact_url(str(err))}") from None


# ---------------------------------------------------------------- probing a stream's server


def stream_address(url: str) -> tuple[str, int] | None:
    """(host, port) of an rtsp:// or http(s):// URL (default ports filled in); None for anything else."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:  # a malformed port: the open reports it
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    return parts.hostname, port or DEFAULT_PORTS[scheme]


def connection_refused(address: tuple[str, int], timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """True when the server at `address` refuses (or resets) a TCP connection now.

    Regression (issue 22): a stopped RTSP server was noticed only after `stall_s` of
    failed reads (about 100 read errors), because a failed read does not say why. One
    connect, closed at once, does: nothing listens there. A timeout or an unreachable
    host is not a refusal (the stall and open timeouts handle those).
    """
    try:
        with socket.create_connection(address, timeout=timeout_s):
            return False
    except (ConnectionRefusedError, ConnectionResetError):
        return True
    except OSError:
        return False


# ---------------------------------------------------------------- backoff


class Backoff:
    """Capped exponential delays with jitter: min, 2*min, 4*min ... up to max, each +-20 %."""

    def __init__(self, min_s: float, max_s: float, rng: random.Random | None = None) -> None:
        self.min_s = min_s
        self.max_s = max(min_s, max_s)
        self._rng = rng or random.Random()
        self._attempt = 0

    def next_delay(self) -> float:
        base = min(self.max_s, self.min_s * 2 ** min(self._attempt, 32))
        self._attempt += 1
        jitter = self._rng.uniform(1 - BACKOFF_JITTER, 1 + BACKOFF_JITTER)
        return min(self.max_s, base * jitter)

    def reset(self) -> None:
        self._attempt = 0


# ---------------------------------------------------------------- the reader thread


class CameraReader(threading.Thread):
    """Reads one camera in its own thread and keeps only the newest frame.

    `latest(after_seq)` hands out the newest frame if it is newer than
    `after_seq` and the `max_fps` budget allows; `counters` says what happened;
    `finished` is true once a non-looped file has ended and its last frame was
    taken. `stop()` ends the thread within about a second, except while OpenCV
    is inside one open/read, which its own timeout bounds.
    """

    def __init__(
        self,
        settings: CameraSettings,
        on_event: Callable[[SourceEvent], None] | None = None,
        opener: Callable[[CameraSettings], cv2.VideoCapture] = open_source,
    ) -> None:
        super().__init__(name=f"capture-{settings.id}", daemon=True)
        self.settings = settings
        self.camera_id = settings.id
        self.source = redact_url(settings.url)
        self.kind = source_kind(settings.url)
        self.counters = CaptureCounters()
        self._on_event = on_event
        self._opener = opener
        self._log = get_logger(camera=settings.id, source=self.source)
        self._stopping = threading.Event()
        self._ended = threading.Event()
        self._lock = threading.Lock()
        self._slot: Frame | None = None
        self._next_seq = 0
        self._next_delivery = -math.inf
        self._up: bool | None = None  # None until the first open succeeds or fails
        self._sizes: set[tuple[int, ...]] = set()
        self._backoff = Backoff(settings.reconnect_min_s, settings.reconnect_max_s)
        self._address = stream_address(settings.url) if self.kind in ("rtsp", "http") else None

    # ---- consumer side

    def latest(self, after_seq: int = -1) -> Frame | None:
        """The newest frame if newer than `after_seq` and due under max_fps; else None.

        A frame held back by the rate cap stays in the slot; a newer one replaces
        it and counts it as skipped, so the consumer always gets the present.
        """
        now = time.monotonic()
        with self._lock:
            frame = self._slot
            if frame is None or frame.seq <= after_seq or now < self._next_delivery:
                return None
            interval = 1.0 / self.settings.max_fps
            # Keep the schedule when on time (steady rate); restart it after an idle gap.
            start = self._next_delivery if now - self._next_delivery < interval else now
            self._next_delivery = start + interval
            self._slot = None
            self.counters.frames_delivered += 1
            return frame

    @property
    def finished(self) -> bool:
        """The source ended for good (non-looped file) and its last frame was taken."""
        with self._lock:
            return self._ended.is_set() and self._slot is None

    def stop(self) -> None:
        """Ask the thread to end; every wait in it wakes up at once."""
        self._stopping.set()

    # ---- reader side

    def run(self) -> None:
        try:
            self._loop()
        except Exception as err:  # a bug must not pass silently, nor kill the process
            self._log.exception("capture_failed", error=redact_url(str(err)))
            self._down(f"capture failed: {type(err).__name__}")
        finally:
            self._ended.set()

    def _loop(self) -> None:
        """Open, read until the source fails, report it, wait the backoff, reopen."""
        first = True
        while not self._stopping.is_set():
            if not first:
                self.counters.reconnects += 1
            first = False
            opened = self._open()
            if isinstance(opened, str):
                reason = opened
            else:
                reason = self._read_until_failure(opened)
                opened.release()
            if reason is None:  # asked to stop
                return
            if reason == END_OF_FILE:
                self._down(END_OF_FILE, always=True)
                return
            self._down(reason)
            self._wait_backoff(reason)

    def _open(self) -> cv2.VideoCapture | str:
        """The opened capture, or why it could not be opened (without the URL)."""
        try:
            return self._opener(self.settings)
        except SourceUnavailable as err:
            reason = f"open failed: {_without_source(str(err), self.source)}"
        except cv2.error as err:
            reason = f"open failed: {redact_url(str(err))}"
        return f"{reason} {CONNECTION_REFUSED}" if self._refused() else reason

    def _refused(self) -> bool:
        """A network source whose server refuses connections now (never true for files and devices)."""
        return self._address is not None and connection_refused(self._address, min(PROBE_TIMEOUT_S, self.settings.open_timeout_s))

    def _wait_backoff(self, reason: str) -> None:
        """Wait the backoff delay; a refused stream's wait ends as soon as its port accepts again.

        The backoff spares a camera that accepts and then fails from being reopened in a
        loop; a port that refuses costs it nothing but a SYN per probe, so the wait for it
        is cut short (and the backoff restarts from its floor) once it is back.
        """
        delay = self._backoff.next_delay()
        self._log.info("source_retry", reason=reason, delay_s=round(delay, 2), reconnects=self.counters.reconnects)
        if not reason.endswith(CONNECTION_REFUSED):
            self._stopping.wait(delay)
            return
        deadline = time.monotonic() + delay
        while not self._stopping.wait(min(PROBE_INTERVAL_S, max(0.0, deadline - time.monotonic()))):
            if time.monotonic() >= deadline:
                return
            if not self._refused():
                self._log.info("source_accepts_again", waited_s=round(delay - (deadline - time.monotonic()), 2))
                self._backoff.reset()
                return

    def _read_until_failure(self, capture: cv2.VideoCapture) -> str | None:
        """Read frames into the slot until the source fails, stalls or ends (its reason) or we stop (None)."""
        pacer = _Pacer(_file_fps(capture)) if self.kind == "file" and self.settings.realtime else None
        frames_this_open = 0
        last_frame_at = time.monotonic()
        next_probe_at = last_frame_at
        while not self._stopping.is_set():
            if pacer is not None and not pacer.wait(self._stopping):
                return None
            ok, image = capture.read()
            now = time.monotonic()
            if ok and image is not None and image.size > 0:
                frames_this_open += 1
                last_frame_at = now
                self._store(image)
                continue
            if self.kind == "file":
                outcome = self._file_ended(capture, frames_this_open)
                if outcome is not None:
                    return outcome
                frames_this_open = 0
                if pacer is not None:
                    pacer.restart()
                continue
            self.counters.read_errors += 1
            if now - last_frame_at >= self.settings.stall_s:
                self.counters.stalls += 1
                return f"no frame for {self.settings.stall_s:g} s"
            if now >= next_probe_at:  # the first failed read probes at once, later ones at most every PROBE_INTERVAL_S
                next_probe_at = now + PROBE_INTERVAL_S
                if self._refused():
                    return f"read failed {CONNECTION_REFUSED}"
            self._stopping.wait(READ_RETRY_S)
        return None

    def _file_ended(self, capture: cv2.VideoCapture, frames_this_open: int) -> str | None:
        """At a file's end: loop by seeking back (None), or say why we stop."""
        if frames_this_open == 0:
            self.counters.read_errors += 1
            return "no frame could be decoded"
        if not self.settings.loop:
            return END_OF_FILE
        if not capture.set(cv2.CAP_PROP_POS_FRAMES, 0):
            return "cannot seek back to the start"
        return None

    def _store(self, image: np.ndarray) -> None:
        """Put a frame in the slot (replacing and counting an untaken one); the first one means up."""
        self._note_size(image.shape)
        frame = Frame(camera=self.camera_id, seq=self._next_seq, ts=time.time(), image=image)
        self._next_seq += 1
        with self._lock:
            if self._slot is not None:
                self.counters.frames_skipped += 1
            self._slot = frame
            self.counters.frames_read += 1
        self._backoff.reset()
        self._up_event()

    def _note_size(self, shape: tuple[int, ...]) -> None:
        """A resolution change mid-stream is accepted; each new size is logged once."""
        if shape in self._sizes:
            return
        if self._sizes:
            self._log.warning("frame_size_changed", shape=list(shape))
        self._sizes.add(shape)

    # ---- events

    def _up_event(self) -> None:
        if self._up is True:
            return
        reason = "first frame" if self._up is None else "frames again"
        self._up = True
        self.counters.up = True
        self._emit(SOURCE_UP, reason)

    def _down(self, reason: str, always: bool = False) -> None:
        """Report down once per outage (repeated failed reopens stay quiet, but are logged)."""
        if self._up is False and not always:
            return
        self._up = False
        self.counters.up = False
        self._emit(SOURCE_DOWN, reason)

    def _emit(self, event: str, reason: str) -> None:
        self._log.info(event, reason=reason)
        if self._on_event is None:
            return
        try:
            self._on_event(SourceEvent(camera=self.camera_id, event=event, source=self.source, reason=reason, ts=time.time()))
        except Exception as err:  # the consumer's bug must not stop capture
            self._log.error("event_callback_failed", error=redact_url(str(err)))


def _without_source(message: str, source: str) -> str:
    """Drop the (redacted) URL from an error message: events carry it in `source` already."""
    return redact_url(message).replace(f" {source}", "")


def _file_fps(capture: cv2.VideoCapture) -> float:
    fps = capture.get(cv2.CAP_PROP_FPS)
    return fps if math.isfinite(fps) and 0.5 <= fps <= 1000 else FALLBACK_FPS


class _Pacer:
    """Paces file reads at the file's frame rate; restarts the schedule when far behind."""

    def __init__(self, fps: float) -> None:
        self.interval = 1.0 / fps
        self.restart()

    def restart(self) -> None:
        self._start = time.monotonic()
        self._count = 0

    def wait(self, stopping: threading.Event) -> bool:
        """Sleep until the next frame is due; False if asked to stop meanwhile."""
        due = self._start + self._count * self.interval
        now = time.monotonic()
        if now - due > 1.0:  # a long hiccup: do not rush to catch up
            self.restart()
            due = now
        self._count += 1
        return not stopping.wait(max(0.0, due - now))
