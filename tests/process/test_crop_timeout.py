"""ocr.timeout_ms bounds a crop (issue 22, "Bounded work"), and pipeline.crop_max_age_s a backlog (issue 16):
a real worker under a real supervisor.

The supervisor (`textwatch.processes.supervisor.Supervisor`, as `textwatch run`
builds it) runs only the publisher and one OCR worker here; the test plays the
detect process (it binds the crops PUSH, `Daemon.play_detect`) so it can hand
the worker a crop no detector would cut: 1400x1400 pixels of noise claiming a
5 px text height. Tesseract's own cancel monitor does not end it (measured:
24 s at timeout_ms = 20; preprocessing scales it up 6x and page layout never
looks at the monitor), so the worker's watchdog must.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from support.daemon import Daemon, daemon_config
from support.ports import free_port
from support.wait import wait_until
from textwatch import wire
from textwatch.processes.ocr import READ_PASSES, WATCHDOG_GRACE_S
from textwatch.tools import status
from textwatch.tools.samples import line_crop

pytestmark = pytest.mark.slow
TIMEOUT_MS = 100
# The crop's deadline (READ_PASSES x timeout + grace), plus the watchdog's look and a loaded 2-core machine.
ABANDONED_WITHIN_S = READ_PASSES * TIMEOUT_MS / 1000 + WATCHDOG_GRACE_S + 1.5
# ... then the supervisor's tick, the spawn, Tesseract's start and the wait for the publisher.
REPLACED_WITHIN_S = ABANDONED_WITHIN_S + 2.0

# `textwatch run`'s supervisor with only the publisher and the workers (the test is detect).
SUPERVISOR = """
import sys
from textwatch.config import load_settings
from textwatch.log import setup_logging
from textwatch.processes.supervisor import Supervisor

setup_logging("info", process="supervisor", json=True)
supervisor = Supervisor(load_settings(sys.argv[1]))
supervisor.specs = [spec for spec in supervisor.specs if spec.role in ("publisher", "worker")]
raise SystemExit(supervisor.run())
"""


def crop_message(pixels: np.ndarray, seq: int, text_height: float, age_s: float = 0.0) -> list[bytes]:
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    header = wire.CropHeader(camera="cam1", seq=seq, ts=time.time() - age_s, region=0, regions=1, box=(0, 0, 1, 1),
                             confidence=0.5, text_height=text_height, shape=tuple(pixels.shape))
    return wire.encode_crop(header, pixels)


def test_a_crop_past_its_deadline_ends_the_worker_which_is_replaced_and_counted(tmp_path: Path) -> None:
    """Regression (issue 22): a legal crop kept a worker in Tesseract for more than 90 s, past
    ocr.timeout_ms = 2000, and it ignored SIGTERM. Now its reading is published as failed
    ("timeout") within the deadline, the worker is replaced at once (off the restart budget), and
    the crop is counted in the worker's stats, the supervisor's and the metrics.

    Then the new worker is stopped (SIGSTOP: like one stuck in C code, it does not act on
    SIGTERM) and the daemon is stopped: the supervisor still ends it (SIGKILL after
    shutdown_grace_s) and exits 0."""
    metrics_port = free_port()
    config = daemon_config(tmp_path, "rtsp://127.0.0.1:9/none", metrics_port=metrics_port)
    config.write_text(config.read_text().replace("[ocr]\n", f"[ocr]\ntimeout_ms = {TIMEOUT_MS}\n"))
    with Daemon(config, {"supervisor": [sys.executable, "-c", SUPERVISOR, str(config)]}) as daemon:
        push = daemon.play_detect()
        with daemon.subscriber("text.", timeout=30) as sub:
            sub.wait_for(lambda topic, body: body.get("process") == "ocr-0", timeout=30)
            noise = (np.random.default_rng(22).random((1400, 1400)) > 0.5).astype(np.uint8) * 255
            sent_at = time.monotonic()
            push.send_multipart(crop_message(noise, seq=1, text_height=5.0))
            _, failed = sub.wait_for(lambda topic, body: topic == "text.cam1" and body["seq"] == 1, timeout=30)
            abandoned = time.monotonic() - sent_at
            assert (failed["status"], failed["error"]) == ("failed", "timeout")
            assert abandoned <= ABANDONED_WITHIN_S, f"abandoned after {abandoned:.2f} s"
            _, final = sub.wait_for(lambda topic, body: body.get("process") == "ocr-0" and body["timeouts"] == 1, timeout=10)
            assert final["failed"] == final["crops_read"] == 1

            wait_until(lambda: len(started(daemon, "ocr-0")) == 2, timeout=REPLACED_WITHIN_S, interval=0.02,
                       message=lambda: daemon.log_text()[-2000:])
            replaced = time.monotonic() - sent_at
            push.send_multipart(crop_message(line_crop("STILL READING 7", height=40), seq=2, text_height=40.0))
            _, read = sub.wait_for(lambda topic, body: topic == "text.cam1" and body["seq"] == 2, timeout=30)
            assert read["text"] == "STILL READING 7"
            print(f"\nworker: crop given up {abandoned:.2f} s, replacement started {replaced:.2f} s, next crop read "
                  f"{time.monotonic() - sent_at:.2f} s after it was sent (timeout_ms {TIMEOUT_MS})")

        timed_out = [e for e in daemon.log_events() if e.get("event") == "worker_timed_out"]
        assert [e["child"] for e in timed_out] == ["ocr-0"]
        samples = wait_until(lambda: counted(metrics_port), timeout=15, message="no timeout in the metrics")
        assert value(samples, "ocr_timeouts_total", process="ocr-0") == 1
        assert value(samples, "child_timed_out_total", child="ocr-0") == 1
        assert value(samples, "child_restarts_total", child="ocr-0") == 0  # a planned replacement, off budget

        os.kill(started(daemon, "ocr-0")[-1], signal.SIGSTOP)
        stopping = time.monotonic()
        assert daemon.terminate(timeout=30) == 0
        print(f"stopped worker: daemon exited 0 after {time.monotonic() - stopping:.2f} s")
        assert [e["child"] for e in daemon.log_events() if e.get("event") == "child_killed"] == ["ocr-0"]
        assert not Path(f"/proc/{started(daemon, 'ocr-0')[-1]}").exists()


def test_a_crop_older_than_crop_max_age_is_answered_stale_not_read(tmp_path: Path) -> None:
    """Regression (issue 16): on a scene that changed every frame the pool fell behind and read a
    backlog of 200 crops, so text came out 20 s after the camera saw it. With pipeline.crop_max_age_s
    set, a crop captured longer ago with a newer one behind it is answered at once as failed ("stale"),
    counted in the worker's stats and the metrics, and the fresh crop behind it is read; a lone old crop
    is still read (skipping it would help nothing)."""
    metrics_port = free_port()
    config = daemon_config(tmp_path, "rtsp://127.0.0.1:9/none", metrics_port=metrics_port)
    config.write_text(config.read_text().replace("[pipeline]\n", "[pipeline]\ncrop_max_age_s = 1.0\n"))
    with Daemon(config, {"supervisor": [sys.executable, "-c", SUPERVISOR, str(config)]}) as daemon:
        push = daemon.play_detect()
        with daemon.subscriber("text.", timeout=30) as sub:
            sub.wait_for(lambda topic, body: body.get("process") == "ocr-0", timeout=30)
            line = line_crop("FRESH LINE 16", height=40)
            # Four old crops and a fresh one queue while the worker is stopped. It may still find the first
            # one alone (a 48 KB crop reaches it in 8 KB reads, so the next may not be whole yet: this test
            # failed that way under load), but the old ones it takes with others behind are skipped.
            worker = started(daemon, "ocr-0")[-1]
            os.kill(worker, signal.SIGSTOP)
            try:
                for seq in range(1, 5):
                    push.send_multipart(crop_message(line, seq=seq, text_height=40.0, age_s=3.0))
                push.send_multipart(crop_message(line, seq=5, text_height=40.0))
                time.sleep(0.3)  # no condition to wait for in a stopped process: let them reach its socket
            finally:
                os.kill(worker, signal.SIGCONT)
            answers = {seq: sub.wait_for(lambda t, b, seq=seq: t == "text.cam1" and b["seq"] == seq, timeout=30)[1]
                       for seq in range(1, 6)}
            stale = [seq for seq, answer in answers.items() if answer["error"] == "stale"]
            assert stale and set(stale) <= {1, 2, 3, 4}, answers
            assert all((answers[seq]["status"], answers[seq]["text"]) == ("failed", "") for seq in stale)
            assert all(answers[seq]["latency_ms"] >= 3000 for seq in stale)
            assert (answers[5]["status"], answers[5]["text"]) == ("text", "FRESH LINE 16")  # the fresh one is read
            push.send_multipart(crop_message(line, seq=6, text_height=40.0, age_s=3.0))  # old, but alone: read
            _, lone = sub.wait_for(lambda topic, body: topic == "text.cam1" and body["seq"] == 6, timeout=30)
            assert (lone["status"], lone["text"]) == ("text", "FRESH LINE 16")
            _, stats = sub.wait_for(lambda topic, body: body.get("process") == "ocr-0" and body["crops_read"] == 6, timeout=15)
            assert (stats["stale"], stats["failed"], stats["text"]) == (len(stale), len(stale), 6 - len(stale))
        wait_until(
            lambda: (found := counted(metrics_port, "ocr_stale_total", process="ocr-0"))
            and value(found, "ocr_stale_total", process="ocr-0") == len(stale),
            timeout=15, message=f"the metrics never counted {len(stale)} stale crops",
        )
        assert daemon.terminate(timeout=30) == 0


def started(daemon: Daemon, child: str) -> list[int]:
    return [e["pid"] for e in daemon.log_events() if e.get("event") == "child_started" and e["child"] == child]


def counted(port: int, name: str = "child_timed_out_total", **labels: str) -> status.Samples | None:
    """The metrics once they hold a count of `name` (by default the supervisor's of the timed-out worker)."""
    try:
        samples = status.parse(urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3).read().decode())
    except OSError:
        return None
    return samples if value(samples, name, **(labels or {"child": "ocr-0"})) else None


def value(samples: status.Samples, name: str, **labels: str) -> float:
    return sum(v for found, v in samples.get(name, []) if labels.items() <= found.items())
