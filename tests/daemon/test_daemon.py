"""The streaming daemon end to end: real processes, sockets, video files and an RTSP server.

Every test starts `textwatch run` as a subprocess, reads its bus with a real
SUB socket, and bounds every wait. See support/daemon.py for the whole-frame
detector that makes the expected text exact.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support.clips import write_line_clip
from support.daemon import Daemon, daemon_config, publish_endpoint
from support.ports import free_port_pair
from support.rtsp import RtspServer, server_available
from support.subscriber import Subscriber, event_is, text_is
from support.wait import wait_until
from textwatch.errors import ExitCode

pytestmark = pytest.mark.slow
TEXT = "TEXTWATCH 42"
LEAD_IN = 20  # blank frames (2 s at 10 frames/s) before a once-played file's first text: see write_line_clip


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    return write_line_clip(tmp_path / "line.mp4", [TEXT], frames_each=20)


def needs_rtsp() -> None:
    reason = server_available()
    if reason:
        pytest.skip(reason)


def test_rtsp_stream_text_reaches_a_subscriber_and_survives_a_server_restart(tmp_path, clip) -> None:
    needs_rtsp()
    with RtspServer(clip, user="admin", password="hunter2") as server:
        config = daemon_config(tmp_path, server.url, stall_s=2.0, reconnect_min_s=0.2, reconnect_max_s=1.0, max_fps=4.0)
        with Subscriber(publish_endpoint(config)) as sub, Daemon(config) as daemon:
            # The first source_up is not waited for: it can be published before this subscriber has
            # joined (see write_line_clip); the one after the restart below is certain to be seen.
            sub.wait_for(text_is(TEXT), timeout=60)

            server.stop()
            down = sub.wait_for(event_is("source_down"), timeout=2.0 + 10)
            server.start()
            sub.wait_for(event_is("source_up"), timeout=30)
            sub.wait_for(text_is(TEXT), timeout=30)

            assert "hunter2" not in down[1]["source"] and "***@" in down[1]["source"]
            assert daemon.terminate(timeout=20) == 0
            assert "hunter2" not in daemon.log_text()


def test_killed_worker_is_restarted_and_the_pipeline_continues(tmp_path, clip) -> None:
    config = daemon_config(tmp_path, str(clip), loop=True, max_fps=5.0)
    with Subscriber(publish_endpoint(config)) as sub, Daemon(config) as daemon:
        sub.wait_for(text_is(TEXT), timeout=60)
        first = daemon.child_pids("ocr-")
        os.kill(first[0], signal.SIGKILL)
        wait_until(lambda: len(daemon.child_pids("ocr-")) >= 2, 30, 0.2, "the killed worker was not restarted")
        assert len(daemon.child_pids("ocr-")) == 2, "the killed worker was not restarted"
        restarted_at = time.time()
        _, body = sub.wait_for(lambda t, b: text_is(TEXT)(t, b) and b["ts"] > restarted_at, timeout=30)
        assert body["worker"] == "ocr-0"
        assert daemon.terminate(timeout=20) == 0


def test_a_subscriber_that_never_reads_does_not_stall_capture(tmp_path, clip) -> None:
    config = daemon_config(tmp_path, str(clip), loop=True, realtime=False, max_fps=50.0)
    endpoint = publish_endpoint(config)
    stuck = Subscriber(endpoint, rcvhwm=1)  # connected, subscribed to everything, never read
    try:
        with Subscriber(endpoint, topics=("stats",)) as sub, Daemon(config) as daemon:
            is_detect = lambda t, b: t == "stats" and b.get("process") == "detect-0" and b["frames"] > 0  # noqa: E731
            _, early = sub.wait_for(is_detect, timeout=60)
            # Stats from 4 s later by the daemon's clock, the stuck subscriber long full by then. (A
            # sleep(4) before reading gave the stats queued meanwhile: the one just after `early`.)
            _, late = sub.wait_for(lambda t, b: is_detect(t, b) and b["ts"] >= early["ts"] + 4, timeout=20)
            assert late["frames"] > early["frames"] + 5, (early, late)
            assert daemon.terminate(timeout=20) == 0
    finally:
        stuck.close()


def test_sigterm_under_load_exits_zero_within_the_deadline(tmp_path, clip) -> None:
    config = daemon_config(tmp_path, str(clip), loop=True, realtime=False, max_fps=100.0)
    with Subscriber(publish_endpoint(config)) as sub, Daemon(config) as daemon:
        sub.wait_for(text_is(TEXT), timeout=60)
        start = time.monotonic()
        assert daemon.terminate(timeout=20) == ExitCode.OK
        # grace 3 s for detect and for workers, 2 s for the publisher, plus process exits
        assert time.monotonic() - start < 12
        assert any(e.get("event") == "daemon_stopped" for e in daemon.log_events())


def test_a_finished_file_stops_the_daemon_cleanly_with_all_text_published(tmp_path) -> None:
    # Regression (fresh clones, sessions 7 and 8): without the lead-in FIRST LINE was read about 0.1 s after the
    # publisher bound, sometimes before this subscriber had joined, and never seen.
    clip = write_line_clip(tmp_path / "two.mp4", ["FIRST LINE", "SECOND LINE"], frames_each=10, lead_in=LEAD_IN)
    config = daemon_config(tmp_path, str(clip), loop=False, realtime=True, max_fps=20.0)
    with Subscriber(publish_endpoint(config)) as sub, Daemon(config) as daemon:
        sub.wait_for(text_is("FIRST LINE"), timeout=60)
        sub.wait_for(text_is("SECOND LINE"), timeout=30)
        sub.wait_for(event_is("source_down"), timeout=30)
        assert daemon.process.wait(timeout=30) == 0
    internal = {t for t, _ in sub.seen if t.startswith("_")}
    assert not internal, f"internal notices (_track., _frame.) reached a subscriber of everything: {internal}"


def test_a_remote_worker_joins_over_tcp_and_takes_work(tmp_path, clip) -> None:
    port = free_port_pair()  # the pool binds PORT (crops) and PORT+1 (results)
    config = daemon_config(
        tmp_path, str(clip), loop=True, max_fps=10.0, extra=f'pool = "tcp://127.0.0.1:{port}"\npool_plaintext_loopback = true'
    )
    exe = Path(sys.executable).with_name("textwatch")
    with Subscriber(publish_endpoint(config)) as sub, Daemon(config) as daemon:
        remote = subprocess.Popen(
            [str(exe), "worker", "--connect", f"tcp://127.0.0.1:{port}", "--name", "remote-1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            _, body = sub.wait_for(lambda t, b: text_is(TEXT)(t, b) and b["worker"] == "remote-1", timeout=60)
            assert body["camera"] == "cam1"
        finally:
            remote.terminate()
            assert remote.wait(timeout=15) == 0
        assert daemon.terminate(timeout=20) == 0
