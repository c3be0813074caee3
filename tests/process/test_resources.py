"""Bounded resources (issue 6): the Tesseract deadline, worker recycling, bounded queues.

Real Tesseract and a real worker on real ipc sockets (in a thread of this
process). Recycling in a real daemon is in daemon/test_daemon_resources.py.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from support.publisher_play import serve_until_worker_joins
from textwatch import wire
from textwatch.config import OcrSettings, Settings
from textwatch.errors import ExitCode
from textwatch.recognize import TIMEOUT, make_recognizer
from textwatch.bus import Endpoints
from textwatch.processes import child
from textwatch.processes.ocr import RSS_BASELINE_CROPS, OcrWorker, RecyclePolicy
from textwatch.tools.samples import line_crop

LONG_LINE = "Invoice 4471 due 2026 " * 30  # ~8500 px wide: Tesseract needs ~250 ms, far beyond 5 ms
MB = 1024 * 1024


# ---------------------------------------------------------------- the Tesseract deadline


@pytest.mark.parametrize("engine", ["tesserocr", "pytesseract"])
def test_a_crop_past_the_deadline_is_failed_with_timeout_and_the_engine_reads_on(engine: str) -> None:
    recognizer = make_recognizer(OcrSettings(engine=engine, timeout_ms=5))
    try:
        reading = recognizer.read(line_crop(LONG_LINE, height=40))
        assert (reading.status, reading.error, reading.text) == ("failed", TIMEOUT, "")
        # the same engine, given time again, reads the next crop normally: nothing is left half-done
        # (5 ms is less than starting a tesseract process, so pytesseract needs the longer limit)
        recognizer.engine.timeout_ms, recognizer.engine.timeout_s = 10_000, 10.0  # type: ignore[union-attr]
        assert recognizer.read(line_crop("EXIT 7", height=40)).text == "EXIT 7"
    finally:
        recognizer.close()


def test_no_deadline_reads_the_long_line() -> None:
    recognizer = make_recognizer(OcrSettings(engine="tesserocr", timeout_ms=0))
    try:
        assert recognizer.read(line_crop(LONG_LINE, height=40)).status == "text"
    finally:
        recognizer.close()


# ---------------------------------------------------------------- the recycling policy


def test_recycle_after_max_crops() -> None:
    policy = RecyclePolicy(max_crops=3, max_growth_bytes=0)
    assert [policy.reason(n, 100 * MB) for n in (1, 2, 3)] == [None, None, "max_crops"]


def test_recycle_on_rss_growth_over_the_rss_after_the_baseline_crops() -> None:
    policy = RecyclePolicy(max_crops=0, max_growth_bytes=200 * MB)
    assert policy.reason(10, 50 * MB) is None  # growth while warming up does not count
    assert policy.reason(RSS_BASELINE_CROPS, 120 * MB) is None  # the base
    assert policy.reason(RSS_BASELINE_CROPS + 500, 320 * MB) is None  # exactly 200 MB more: still fine
    assert policy.reason(RSS_BASELINE_CROPS + 510, 321 * MB) == "rss_growth"


def test_zero_means_never_recycle() -> None:
    policy = RecyclePolicy(max_crops=0, max_growth_bytes=0)
    assert policy.reason(RSS_BASELINE_CROPS, 100 * MB) is None
    assert policy.reason(10**9, 100_000 * MB) is None


# ---------------------------------------------------------------- a real worker on real sockets


class WorkerRig:
    """An OcrWorker in a thread (child.start, as the supervisor's children run it), fed by a PUSH
    and read through an XSUB, as the daemon does."""

    def __init__(self, folder: Path, settings: Settings) -> None:
        self.context = zmq.Context()
        self.push = self.context.socket(zmq.PUSH)
        self.push.setsockopt(zmq.LINGER, 0)
        self.push.setsockopt(zmq.SNDTIMEO, 30_000)  # blocks until the worker has connected
        self.xsub = self.context.socket(zmq.XSUB)
        self.xsub.setsockopt(zmq.LINGER, 0)
        crops, results = f"ipc://{folder}/crops.ipc", f"ipc://{folder}/results.ipc"
        self.push.bind(crops)
        self.xsub.bind(results)
        # the publisher's own subscriptions (an empty one, b"\x01", is not replayed to late peers)
        self.xsub.send(b"\x01text.")
        self.xsub.send(b"\x01stats")
        self.stop = threading.Event()
        self.code: int | None = None
        self.thread = threading.Thread(target=self._run, args=(settings, crops, results), daemon=True)
        self.thread.start()

    def _run(self, settings: Settings, crops: str, results: str) -> None:
        endpoints = Endpoints(runtime_dir=None, crops=crops, results=results, publish="", publish_local="")
        self.code = child.start(OcrWorker, settings, endpoints, "ocr-test", self.stop)

    def send(self, pixels: np.ndarray, seq: int) -> None:
        serve_until_worker_joins(self.push, self.xsub)
        header = wire.CropHeader(
            camera="cam1", seq=seq, ts=time.time(), region=0, regions=1, box=(0, 0, pixels.shape[1], pixels.shape[0]),
            confidence=0.9, text_height=40.0, shape=tuple(pixels.shape), track=None,
        )
        self.push.send_multipart(wire.encode_crop(header, pixels))

    def receive(self, topic: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.xsub.poll(100):
                frames = self.xsub.recv_multipart()
                if frames[0].decode().startswith(topic):
                    return json.loads(frames[-1])
        raise TimeoutError(f"no {topic} message from the worker within {timeout}s")

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)
        self.push.close()
        self.xsub.close()
        self.context.term()


def test_a_timed_out_crop_is_published_as_failed_and_counted(tmp_path: Path) -> None:
    settings = Settings()
    settings.ocr.engine, settings.ocr.timeout_ms = "tesserocr", 5
    settings.pipeline.stats_interval_s = 0.2
    rig = WorkerRig(tmp_path, settings)
    try:
        rig.send(line_crop(LONG_LINE, height=40), seq=1)
        result = rig.receive("text.", timeout=30)
        assert (result["status"], result["error"]) == ("failed", TIMEOUT)
        stats = rig.receive("stats", timeout=10)
        assert stats["timeouts"] == 1 and stats["failed"] == 1
    finally:
        rig.close()


def test_a_worker_retires_with_exit_75_after_max_crops(tmp_path: Path) -> None:
    settings = Settings()
    settings.pipeline.worker_max_crops = 3
    settings.pipeline.stats_interval_s = 0.2
    rig = WorkerRig(tmp_path, settings)
    try:
        # Its first stats prove our subscription reached the worker: results sent before
        # that are lost (ZeroMQ's slow joiner), which made this test flaky on a loaded machine.
        rig.receive("stats", timeout=30)
        # Lines 1-3, not 0-2: a lone "0" after capitals is an "O" in DejaVu Sans, and Tesseract
        # reads it either way depending on scale (the confusables filter is per camera).
        for seq in range(3):
            rig.send(line_crop(f"LINE {seq + 1}", height=40), seq=seq)
        texts = [rig.receive("text.", timeout=30)["text"] for _ in range(3)]
        assert texts == ["LINE 1", "LINE 2", "LINE 3"]
        rig.thread.join(10)
        assert rig.code == ExitCode.RECYCLE
        final = rig.receive("stats", timeout=5)
        assert final["crops_read"] == 3
    finally:
        rig.close()
