"""The OCR worker process: crops in (PULL), text results out (PUB towards the publisher).

One worker owns one Recognizer (one Tesseract) and reads one crop at a time.
Local workers connect to the ipc endpoints of bus.Endpoints; remote workers
(`textwatch worker --connect tcp://HOST:PORT`) connect to the daemon's pool:
crops on PORT, results on PORT+1.

Every crop gives exactly one text.<camera> message with status "text", "empty"
or "failed"; a message that is not a valid crop is counted as `rejected` and
skipped. SIGTERM/SIGINT (or the `stop` event) let the crop being read finish,
then the worker publishes its final stats and exits 0. Crops still queued in
its PULL (at most bus.WORKER_CROP_RCVHWM plus OS buffering) are lost.

Recycling bounds what one worker can accumulate (Tesseract's caches, heap
fragmentation): after `pipeline.worker_max_crops` crops, or once its RSS grew
by more than `pipeline.worker_max_rss_growth_mb` over its RSS after its first
RSS_BASELINE_CROPS crops, a worker finishes the crop in hand, closes its PULL
(so PUSH deals new crops to the other workers; the few already queued in it
are lost, and show as incomplete frames), publishes final stats and exits
ExitCode.RECYCLE (75). The supervisor replaces it at once, outside the restart
budget, and logs `worker_recycled`.

The crop deadline (`CropWatchdog`): Tesseract's own cancel monitor ends most
slow readings at ocr.timeout_ms, but not all (page layout, thresholding and
our preprocessing never look at it: a 1400x1400 noise crop with a 5 px text
height took 24 s at timeout_ms = 20). A watchdog thread in the worker (the
engines release the GIL) gives the crops being read READ_PASSES x
ocr.timeout_ms each, plus WATCHDOG_GRACE_S; past that it publishes each of
them as "failed" with error "timeout", the worker's final stats (`timeouts`
counted), and ends the process with ExitCode.TIMED_OUT (124): the supervisor
replaces it at once, off budget (`worker_timed_out`, `timed_out` in its
stats). While a reading is within its deadline the watchdog beats the
supervisor's heartbeat, so a long legal batch is not taken for a hang; with
ocr.timeout_ms = 0 (no limit) there is no watchdog, and pipeline.hung_s is the
only bound.
"""

from __future__ import annotations

import argparse
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import structlog
import zmq

from textwatch import bus, wire
from textwatch.config import OcrSettings, Settings, load_settings
from textwatch.errors import ExitCode
from textwatch.log import get_logger
from textwatch.metrics import rss_bytes
from textwatch.processes import child
from textwatch.processes.child import Process
from textwatch.recognize import STALE, TIMEOUT, Reading, Recognizers
from textwatch.recognize.reading import bounded

DRAIN_QUIET_MS = 300  # on stop, a queue silent this long is considered empty
POLL_MS = 200  # how often a quiet worker looks at its stop flag
RSS_BASELINE_CROPS = 100  # a worker's RSS after this many crops is the base its growth is measured from
RSS_CHECK_EVERY = 10  # crops between two looks at /proc/self/statm
READ_PASSES = 2  # Tesseract may read a crop twice (ocr.psm, then ocr.fallback_psm), each pass bounded by timeout_ms
WATCHDOG_GRACE_S = 0.5  # on top of the crops' time: Tesseract's own monitor should end them first
WATCHDOG_EVERY_S = 0.05  # how often the watchdog looks (and beats while a reading is within its deadline)
FLUSH_S = 1.5  # a timed-out worker's last results and stats get this long to leave before the process ends


@dataclass
class WorkerCounters:
    crops_read: int = 0  # crops decoded and read (text + empty + failed)
    text: int = 0
    empty: int = 0
    failed: int = 0
    timeouts: int = 0  # failed readings abandoned at ocr.timeout_ms (also counted in failed)
    stale: int = 0  # crops skipped as older than pipeline.crop_max_age_s (also counted in failed)
    rejected: int = 0  # messages that were not valid crops
    ocr_ms_total: float = 0.0  # time spent in the recognizer

    def as_dict(self) -> dict[str, int | float]:
        return dict(self.__dict__)


@dataclass
class RecyclePolicy:
    """When a worker should retire: after `max_crops` crops, or once its RSS grew by more
    than `max_growth_bytes` over its RSS after RSS_BASELINE_CROPS crops (0 = never, each)."""

    max_crops: int
    max_growth_bytes: int
    baseline_rss: int | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> RecyclePolicy:
        pipeline = settings.pipeline
        return cls(pipeline.worker_max_crops, int(pipeline.worker_max_rss_growth_mb * 1024 * 1024))

    def reason(self, crops: int, rss: int | None) -> str | None:
        """Why to retire after `crops` crops with resident memory `rss` (bytes, None = unknown); None = keep going."""
        if self.max_crops and crops >= self.max_crops:
            return "max_crops"
        if rss is None or not self.max_growth_bytes:
            return None
        if self.baseline_rss is None:
            if crops >= RSS_BASELINE_CROPS:
                self.baseline_rss = rss
            return None
        if rss - self.baseline_rss > self.max_growth_bytes:
            return "rss_growth"
        return None


@dataclass
class InHand:
    """The crops being read now, and when they must be done."""

    headers: list[wire.CropHeader]
    deadline: float  # time.monotonic()


class CropWatchdog:
    """Bounds the time a worker spends on the crops in hand (the module's docstring says how).

    `guard` serialises the hand-over: the worker's thread sets and clears `in_hand`
    under it, the watchdog decides under it. Once the watchdog has taken over, it
    holds `guard` until the process ends, so the worker's thread, back from a late
    reading, never publishes a second result for the same crop, nor touches its
    sockets again: the watchdog uses them (a ZeroMQ socket may change threads
    across a full memory barrier, which the lock is; the worker's thread is not
    using them while a reading is in hand).
    """

    def __init__(self, per_crop_s: float, on_expired: Callable[[InHand], None], heartbeat: Callable[[], None]) -> None:
        self.per_crop_s = per_crop_s
        self.on_expired = on_expired
        self.heartbeat = heartbeat
        self.guard = threading.Lock()
        self.in_hand: InHand | None = None
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.watch, name="crop-watchdog", daemon=True)
        self.thread.start()

    def reading(self, headers: list[wire.CropHeader]) -> None:
        """The worker's thread starts reading these crops."""
        with self.guard:
            self.in_hand = InHand(headers, time.monotonic() + self.per_crop_s * len(headers) + WATCHDOG_GRACE_S)

    def done(self) -> None:
        """The worker's thread has their readings (blocks for good when the watchdog took over)."""
        with self.guard:
            self.in_hand = None

    def watch(self) -> None:
        while not self.stopped.wait(WATCHDOG_EVERY_S):
            with self.guard:
                in_hand = self.in_hand
                if in_hand is None:
                    continue
                if time.monotonic() < in_hand.deadline:
                    self.heartbeat()  # reading, within its deadline: progress
                    continue
                self.on_expired(in_hand)  # ends the process; the guard is never released

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=1.0)


class OcrWorker(Process):
    """One OCR worker: PULL a crop, read it, PUB its text result; stats every stats_interval_s."""

    role = "worker"

    def __init__(self, settings: Settings, endpoints: bus.Endpoints, name: str, stop: threading.Event) -> None:
        super().__init__(settings, endpoints, name, stop)
        self.log = get_logger()
        self.counters = WorkerCounters()
        self.started = time.time()
        self.recycle = RecyclePolicy.from_settings(settings)
        self.retire_reason: str | None = None  # set once the policy says this worker should be replaced
        self.crops: zmq.Socket | None = None
        self.results: zmq.Socket | None = None
        self.recognizers = Recognizers(reader_settings(settings))
        self.recognizers.get()  # the default engine now: a TextwatchError here means the worker cannot start
        try:
            self.open_sockets()
        except BaseException:
            self.close()
            raise
        self.poller = zmq.Poller()
        self.poller.register(self.crops, zmq.POLLIN)
        self.poller.register(self.results, zmq.POLLIN)  # subscription messages from the publisher
        self.next_stats = time.monotonic() + settings.pipeline.stats_interval_s
        timeout_s = settings.ocr.timeout_ms / 1000.0
        self.watchdog = (
            CropWatchdog(READ_PASSES * timeout_s, self.abandon, lambda: self.heartbeat.beat()) if timeout_s else None
        )
        self.log.info("worker_started", crops=endpoints.crops, results=endpoints.results)

    def open_sockets(self) -> None:
        """Results first, and wait for the publisher's subscription before taking crops:
        a crop read before the publisher listens would be a result dropped."""
        ctx = zmq.Context.instance()
        curve = bus.ClientCurve.from_settings(self.settings)  # ignored on ipc endpoints
        self.results = bus.result_publisher(ctx, self.endpoints.results, curve)
        self.wait_for_publisher(self.results)
        self.crops = bus.crop_puller(ctx, self.endpoints.crops, curve)

    def step(self) -> None:
        """Take one crop (waiting at most POLL_MS), then stats when due."""
        ready = dict(self.poller.poll(POLL_MS))
        if self.results in ready:
            bus.drain_subscriptions(self.results)
        if self.crops in ready and not self.stop.is_set():
            self.handle_batch(self.take_queued())
        if time.monotonic() >= self.next_stats:
            self.publish_stats()
            self.next_stats = time.monotonic() + self.settings.pipeline.stats_interval_s

    def done(self) -> bool:
        return self.retire_reason is not None

    def finish(self) -> int:
        """Retire (recycling), or drain what is queued for us and report (a stop)."""
        if self.retire_reason is not None:
            return self.retire()
        self.drain(self.settings.pipeline.shutdown_grace_s)
        self.publish_stats()
        self.log.info("worker_stopped", **self.counters.as_dict())
        return int(ExitCode.OK)

    def take_queued(self) -> list[list[bytes]]:
        """The crops already queued for this worker, up to ocr.batch; never waits for more
        (a batch is what arrived while the last one was read, so low load adds no latency)."""
        messages: list[list[bytes]] = []
        while len(messages) < self.settings.ocr.batch:
            try:
                messages.append(self.crops.recv_multipart(zmq.NOBLOCK))
            except zmq.Again:
                break
        return messages

    def handle_batch(self, messages: list[list[bytes]]) -> None:
        """Decode, read (one batched pass per engine and charset) and publish; a malformed message is counted and skipped."""
        crops: dict[tuple[str | None, str], list[tuple[wire.CropHeader, np.ndarray]]] = {}
        more_queued = bool(self.crops is not None and self.crops.poll(0, zmq.POLLIN))
        for index, frames in enumerate(messages):
            try:
                header, pixels = wire.decode_crop(frames)
            except wire.WireError as err:
                self.counters.rejected += 1
                self.log.warning("crop_rejected", reason=str(err))
                continue
            if (more_queued or index < len(messages) - 1) and self.stale(header):
                self.skip_stale(header)
                continue
            crops.setdefault((header.engine, header.charset), []).append((header, pixels))
        for (engine, charset), group in crops.items():
            start = time.perf_counter()
            if self.watchdog is not None:
                self.watchdog.reading([header for header, _ in group])
            try:
                readings = self.read(engine, charset, group)
            finally:
                if self.watchdog is not None:
                    self.watchdog.done()
            self.counters.ocr_ms_total += (time.perf_counter() - start) * 1000.0
            for (header, _), reading in zip(group, readings):
                self.count(reading)
                self.publish(wire.encode_published(wire.TOPIC_TEXT, text_result(header, reading, self.name), header.camera))
        self.check_recycle()

    def stale(self, header: wire.CropHeader) -> bool:
        """Captured longer ago than pipeline.crop_max_age_s (asked only while newer crops wait behind
        it): the pool is behind, and reading it would only delay them (issue 16: on a scene that moved
        every frame, 200 queued crops put text 20 s behind the camera). A lone old crop is still read:
        skipping it would help nothing. Off by default: a file, or a camera whose every read matters,
        wants them all. Capture time is the detect host's clock: a remote worker needs a synchronised
        clock (NTP), as its results' latency_ms does."""
        limit = self.settings.pipeline.crop_max_age_s
        return limit > 0 and time.time() - header.ts > limit

    def skip_stale(self, header: wire.CropHeader) -> None:
        """A stale crop is not read, but answered (failed, "stale") so its frame completes, and counted."""
        reading = Reading("failed", error=STALE)
        self.count(reading)
        self.publish(wire.encode_published(wire.TOPIC_TEXT, text_result(header, reading, self.name), header.camera))

    def read(self, engine: str | None, charset: str, group: list[tuple[wire.CropHeader, np.ndarray]]) -> list[Reading]:
        """Read one engine's crops; whatever goes wrong is a "failed" reading of each, published and
        counted, never a dead worker (an engine that cannot start, a bug on one crop)."""
        gray = [p[:, :, 0] if p.shape[2] == 1 else p for _, p in group]  # gray crops: HxW, not HxWx1
        pixels, heights = zip(*(bounded(p, header.text_height) for p, (header, _) in zip(gray, group)))
        try:
            recognizer = self.recognizers.get(engine)
            return recognizer.read_batch(list(pixels), charset, list(heights))
        except Exception as err:  # noqa: BLE001 - logged with its traceback; the crops are failed, not lost
            self.log.exception("read_crashed", engine=engine or self.settings.ocr.engine)
            return [Reading("failed", error=f"{type(err).__name__}: {err}")] * len(group)

    def check_recycle(self) -> None:
        """After each crop: has this worker read enough, or grown too much? (RSS looked at every few crops.)"""
        crops = self.counters.crops_read
        look = crops % RSS_CHECK_EVERY == 0 or crops == RSS_BASELINE_CROPS
        self.retire_reason = self.recycle.reason(crops, rss_bytes() if look else None)

    def count(self, reading: Reading) -> None:
        self.counters.crops_read += 1
        setattr(self.counters, reading.status, getattr(self.counters, reading.status) + 1)
        if reading.error == TIMEOUT:
            self.counters.timeouts += 1
        if reading.error == STALE:
            self.counters.stale += 1

    def publish(self, message: list[bytes]) -> None:
        """PUB semantics: never blocks; past RESULTS_SNDHWM (or with no publisher) ZeroMQ drops it."""
        assert self.results is not None
        try:
            self.results.send_multipart(message, zmq.NOBLOCK)
        except zmq.Again:
            pass

    def publish_stats(self) -> None:
        c = self.counters
        stats = wire.WorkerStats(
            process=self.name, ts=time.time(), crops_read=c.crops_read, text=c.text, empty=c.empty, failed=c.failed,
            timeouts=c.timeouts, rejected=c.rejected, ocr_ms_total=round(c.ocr_ms_total, 3), stale=c.stale,
            started=self.started, rss_bytes=rss_bytes(),
        )
        self.publish(wire.encode_published(wire.TOPIC_STATS, stats))

    def retire(self) -> int:
        """Recycling: take nothing more (close the PULL, so PUSH deals to the others), report, exit RECYCLE."""
        assert self.crops is not None
        self.crops.close()
        self.publish_stats()
        self.log.info("worker_retiring", reason=self.retire_reason, rss_bytes=rss_bytes(), **self.counters.as_dict())
        return int(ExitCode.RECYCLE)

    def drain(self, grace_s: float) -> None:
        """After stop: read the crops already queued for this worker, until none comes for
        DRAIN_QUIET_MS or the grace period ends, so a clean shutdown loses no accepted crop."""
        assert self.crops is not None
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and self.crops.poll(DRAIN_QUIET_MS, zmq.POLLIN):
            self.handle_batch(self.take_queued())

    def abandon(self, in_hand: InHand) -> None:
        """The watchdog's verdict (its thread, holding the guard): the crops in hand are failed with
        "timeout", published with final stats, and the process ends with ExitCode.TIMED_OUT; the
        engine may be stuck in C code that nothing else can stop."""
        self.log.error(
            "crop_timed_out", crops=len(in_hand.headers), timeout_ms=self.settings.ocr.timeout_ms,
            camera=in_hand.headers[0].camera, seq=in_hand.headers[0].seq, code=int(ExitCode.TIMED_OUT),
        )
        reading = Reading("failed", error=TIMEOUT)
        for header in in_hand.headers:
            self.count(reading)
            self.publish(wire.encode_published(wire.TOPIC_TEXT, text_result(header, reading, self.name), header.camera))
        self.publish_stats()
        self.flush_and_exit(int(ExitCode.TIMED_OUT))

    def flush_and_exit(self, code: int) -> None:
        """Let what was just published leave (a context's term waits for it, up to FLUSH_S), then end now."""
        assert self.results is not None and self.crops is not None
        self.crops.close(linger=0)
        self.results.close(linger=int(FLUSH_S * 1000))
        term = threading.Thread(target=zmq.Context.instance().term, daemon=True)
        term.start()
        term.join(FLUSH_S + 0.5)
        os._exit(code)

    def close(self) -> None:
        if getattr(self, "watchdog", None) is not None:
            self.watchdog.close()
        for sock in (self.crops, self.results):
            if sock is not None:
                sock.close()
        self.recognizers.close()


def text_result(header: wire.CropHeader, reading: Reading, worker: str) -> wire.TextResult:
    return wire.TextResult(
        camera=header.camera,
        seq=header.seq,
        ts=header.ts,
        region=header.region,
        regions=header.regions,
        box=header.box,
        confidence=header.confidence,
        status=reading.status,
        text=reading.text,
        ocr_confidence=round(reading.confidence, 2),
        worker=worker,
        latency_ms=round((time.time() - header.ts) * 1000.0, 2),
        track=header.track,
        error=reading.error,
    )


# ---------------------------------------------------------------- `textwatch worker`


def add_worker_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--connect", required=True, metavar="tcp://HOST:PORT",
        help="the daemon's bus.pool address: crops come from PORT, results go to PORT+1",
    )
    parser.add_argument("-c", "--config", help="config file for the [ocr] section (default: built-in defaults)")
    parser.add_argument("--name", help="worker name in results, stats and logs (default: HOSTNAME-PID)")


def run_worker_cli(args: argparse.Namespace) -> int:
    """`textwatch worker --connect tcp://HOST:PORT`: a remote worker for a daemon's pool."""
    settings = load_settings(args.config)
    endpoints = bus.Endpoints.remote_worker(args.connect)
    name = args.name or f"{socket.gethostname()}-{os.getpid()}"
    structlog.contextvars.bind_contextvars(process=name)
    return child.run_alone(OcrWorker, settings, endpoints, name)


def reader_settings(settings: Settings) -> OcrSettings:
    """This worker's OCR settings: `ocr.ppocr_threads = 0` becomes the cores shared out over the local
    workers (bus.local_workers), at least one each, so a lone worker on a small box is not held to one
    core while the detector idles, and a full pool does not oversubscribe the cores."""
    if settings.ocr.ppocr_threads:
        return settings.ocr
    threads = max(1, len(os.sched_getaffinity(0)) // bus.local_workers(settings))
    return settings.ocr.model_copy(update={"ppocr_threads": threads})


if __name__ == "__main__":
    raise SystemExit(child.main(OcrWorker, "ocr-0"))
