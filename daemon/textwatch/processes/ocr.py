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
"""

from __future__ import annotations

import argparse
import os
import socket
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import structlog
import zmq

from textwatch import bus, wire
from textwatch.config import Settings, load_settings
from textwatch.errors import ExitCode, TextwatchError
from textwatch.log import get_logger
from textwatch.metrics import process_fields, rss_bytes
from textwatch.recognize import TIMEOUT, Reading, Recognizer

DRAIN_QUIET_MS = 300  # on stop, a queue silent this long is considered empty
POLL_MS = 200  # how often a quiet worker looks at its stop flag
SUBSCRIBER_WAIT_S = 5.0  # at start, wait this long for the publisher before taking crops
RSS_BASELINE_CROPS = 100  # a worker's RSS after this many crops is the base its growth is measured from
RSS_CHECK_EVERY = 10  # crops between two looks at /proc/self/statm


@dataclass
class WorkerCounters:
    crops_read: int = 0  # crops decoded and read (text + empty + failed)
    text: int = 0
    empty: int = 0
    failed: int = 0
    timeouts: int = 0  # failed readings abandoned at ocr.timeout_ms (also counted in failed)
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
class Worker:
    """One worker's state; `run_worker` drives it."""

    name: str
    recognizer: Recognizer
    crops: zmq.Socket
    results: zmq.Socket
    counters: WorkerCounters = field(default_factory=WorkerCounters)
    started: float = field(default_factory=time.time)
    recycle: RecyclePolicy = field(default_factory=lambda: RecyclePolicy(0, 0))
    retire_reason: str | None = None  # set once the policy says this worker should be replaced

    def handle(self, frames: list[bytes]) -> None:
        """Decode, read and publish one crop message; a malformed one is counted and skipped."""
        try:
            header, pixels = wire.decode_crop(frames)
        except wire.WireError as err:
            self.counters.rejected += 1
            get_logger().warning("crop_rejected", reason=str(err))
            return
        start = time.perf_counter()
        reading = self.read(pixels, header.text_height)
        self.counters.ocr_ms_total += (time.perf_counter() - start) * 1000.0
        self.count(reading)
        self.publish(wire.TOPIC_TEXT, text_result(header, reading, self.name), header.camera)
        self.check_recycle()

    def check_recycle(self) -> None:
        """After each crop: has this worker read enough, or grown too much? (RSS looked at every few crops.)"""
        crops = self.counters.crops_read
        look = crops % RSS_CHECK_EVERY == 0 or crops == RSS_BASELINE_CROPS
        self.retire_reason = self.recycle.reason(crops, rss_bytes() if look else None)

    def read(self, pixels: np.ndarray, text_height: float) -> Reading:
        """Read one crop; whatever goes wrong is a "failed" reading, published and counted, never a dead worker."""
        if pixels.shape[2] == 1:
            pixels = pixels[:, :, 0]  # gray crops: the recognizer takes HxW, not HxWx1
        try:
            return self.recognizer.read(pixels, text_height)
        except Exception as err:  # noqa: BLE001 - a bug on one crop must not stop the pool; logged with traceback
            get_logger().exception("read_crashed")
            return Reading("failed", error=f"{type(err).__name__}: {err}")

    def count(self, reading: Reading) -> None:
        self.counters.crops_read += 1
        setattr(self.counters, reading.status, getattr(self.counters, reading.status) + 1)
        if reading.error == TIMEOUT:
            self.counters.timeouts += 1

    def publish(self, kind: str, payload: object, camera: str | None = None) -> None:
        # PUB semantics: never blocks; past RESULTS_SNDHWM (or with no publisher) it drops.
        try:
            self.results.send_multipart(wire.encode_published(kind, payload, camera), zmq.NOBLOCK)
        except zmq.Again:
            pass

    def publish_stats(self) -> None:
        counters = {**self.counters.as_dict(), "ocr_ms_total": round(self.counters.ocr_ms_total, 3)}
        stats = {"process": self.name, "role": "worker", "ts": time.time(), **counters, **process_fields(self.started)}
        self.publish(wire.TOPIC_STATS, stats)


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


def run_worker(
    settings: Settings,
    crops_endpoint: str,
    results_endpoint: str,
    name: str,
    stop: threading.Event | None = None,
) -> int:
    """Read crops until stopped; returns the exit code (0 on stop, the error's code if OCR can't start)."""
    stop = stop or threading.Event()
    restore = bus.stop_on_signals(stop)
    bus.set_process_title(f"textwatch: worker {name}")
    structlog.contextvars.bind_contextvars(process=name)
    log = get_logger()
    try:
        recognizer = Recognizer(settings.ocr)
    except TextwatchError as err:
        restore()
        log.error("worker_cannot_start", error=str(err))
        return int(err.exit_code)
    ctx = zmq.Context.instance()
    curve = bus.ClientCurve.from_settings(settings)  # ignored on ipc endpoints
    results = bus.result_publisher(ctx, results_endpoint, curve)
    crops: zmq.Socket | None = None
    try:
        if not bus.wait_for_subscriber(results, SUBSCRIBER_WAIT_S, stop):
            log.warning("publisher_not_reachable", results=results_endpoint, note="taking crops anyway")
        crops = bus.crop_puller(ctx, crops_endpoint, curve)
        worker = Worker(name, recognizer, crops, results, recycle=RecyclePolicy.from_settings(settings))
        log.info("worker_started", crops=crops_endpoint, results=results_endpoint)
        _loop(worker, settings.pipeline.stats_interval_s, stop)
        if worker.retire_reason is not None:
            return _retire(worker, crops)
        _drain(worker, settings.pipeline.shutdown_grace_s)
        worker.publish_stats()
        log.info("worker_stopped", **worker.counters.as_dict())
        return int(ExitCode.OK)
    finally:
        restore()
        if crops is not None:
            crops.close()
        results.close()
        recognizer.close()


def _loop(worker: Worker, stats_interval_s: float, stop: threading.Event) -> None:
    """Take one crop at a time; look at `stop` between crops and at least every POLL_MS."""
    poller = zmq.Poller()
    poller.register(worker.crops, zmq.POLLIN)
    poller.register(worker.results, zmq.POLLIN)  # subscription messages from the publisher
    next_stats = time.monotonic() + stats_interval_s
    while not stop.is_set() and worker.retire_reason is None:
        ready = dict(poller.poll(POLL_MS))
        if worker.results in ready:
            bus.drain_subscriptions(worker.results)
        if worker.crops in ready and not stop.is_set():
            worker.handle(worker.crops.recv_multipart(zmq.NOBLOCK))
        if time.monotonic() >= next_stats:
            worker.publish_stats()
            next_stats = time.monotonic() + stats_interval_s


def _retire(worker: Worker, crops: zmq.Socket) -> int:
    """Recycling: take nothing more (close the PULL, so PUSH deals to the others), report, exit RECYCLE."""
    crops.close()
    worker.publish_stats()
    get_logger().info("worker_retiring", reason=worker.retire_reason, rss_bytes=rss_bytes(), **worker.counters.as_dict())
    return int(ExitCode.RECYCLE)


def _drain(worker: Worker, grace_s: float) -> None:
    """After stop: read the crops already queued for this worker, until none comes for
    DRAIN_QUIET_MS or the grace period ends, so a clean shutdown loses no accepted crop."""
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and worker.crops.poll(DRAIN_QUIET_MS, zmq.POLLIN):
        worker.handle(worker.crops.recv_multipart(zmq.NOBLOCK))


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
    crops, results = bus.remote_endpoints(args.connect)
    name = args.name or f"{socket.gethostname()}-{os.getpid()}"
    return run_worker(settings, crops, results, name)
