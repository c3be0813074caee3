"""sd_notify spoken by a real daemon.

The tests bind a real AF_UNIX datagram socket (conftest's notify_socket), start
`textwatch run` with NOTIFY_SOCKET and WATCHDOG_USEC pointing at it (as systemd
would), and read what the supervisor says: READY=1 after progress, WATCHDOG=1
while text flows and not while detect is wedged, STATUS= lines, STOPPING=1 on
SIGTERM. The unit file and sd_notify in-process are in process/test_systemd.py.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import time
from pathlib import Path

import pytest

from support.clips import write_line_clip
from support.daemon import Daemon, daemon_config, publish_endpoint
from support.subscriber import Subscriber, text_is
from support.wait import wait_until

TEXT = "TEXTWATCH 42"
WATCHDOG_S = 2.0


class NotifyListener:
    """What the daemon sent to NOTIFY_SOCKET, each message with its arrival time; every wait bounded."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.messages: list[tuple[float, dict[str, str]]] = []

    def poll(self, seconds: float) -> None:
        """Collect for `seconds`."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self._receive(left)

    def wait_for(self, key: str, value: str | None = None, timeout: float = 60, after: float = 0.0) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while True:
            for at, fields in self.messages:
                if at >= after and key in fields and (value is None or fields[key] == value):
                    return fields
            left = deadline - time.monotonic()
            if left <= 0:
                recent = [m for _, m in self.messages][-5:]
                raise TimeoutError(f"no {key}={value or '*'} within {timeout}s; last messages: {recent}")
            self._receive(left)

    def times(self, key: str, after: float = 0.0, before: float = float("inf")) -> list[float]:
        return [at for at, fields in self.messages if key in fields and after <= at < before]

    def _receive(self, left: float) -> None:
        self.sock.settimeout(max(0.01, min(left, 0.5)))
        try:
            data = self.sock.recv(4096)
        except TimeoutError:
            return
        fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
        self.messages.append((time.monotonic(), fields))


@pytest.fixture
def listener(notify_socket: socket.socket, monkeypatch: pytest.MonkeyPatch) -> NotifyListener:
    """NOTIFY_SOCKET and a 2 s watchdog in the daemon's environment (Daemon copies os.environ)."""
    monkeypatch.setenv("WATCHDOG_USEC", str(int(WATCHDOG_S * 1_000_000)))
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    return NotifyListener(notify_socket)


@pytest.fixture
def looping_config(tmp_path: Path) -> Path:
    clip = write_line_clip(tmp_path / "line.mp4", [TEXT], frames_each=20)
    return daemon_config(tmp_path, str(clip), loop=True, max_fps=5.0)


def log_event(daemon: Daemon, name: str, timeout: float = 5.0) -> dict:
    """The first `name` event of the daemon's log, waiting up to `timeout` for it to be written."""
    events = wait_until(
        lambda: [e for e in daemon.log_events() if e.get("event") == name], timeout, interval=0.1,
        message=lambda: f"no {name} in the daemon log:\n{daemon.log_text()[-3000:]}",
    )
    return events[0]


def max_gap(times: list[float]) -> float:
    return max((b - a for a, b in zip(times, times[1:])), default=float("inf"))


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_ready_watchdog_status_and_stopping_from_a_real_daemon(
    listener: NotifyListener, looping_config: Path
) -> None:
    with Subscriber(publish_endpoint(looping_config)) as sub, Daemon(looping_config) as daemon:
        ready = listener.wait_for("READY", "1", timeout=90)
        ready_at = listener.times("READY")[0]
        assert not listener.times("WATCHDOG", before=ready_at), "a watchdog ping before READY"
        assert ready["MAINPID"] == str(daemon.process.pid)
        assert ready["STATUS"].startswith("cameras 1/1 up")
        assert log_event(daemon, "systemd_ready")["frames"] > 0, "READY before detect saw a frame"

        sub.wait_for(text_is(TEXT), timeout=60)
        flowing = time.monotonic()
        listener.poll(6.0)
        pings = listener.times("WATCHDOG", after=flowing)
        assert len(pings) >= 4, listener.messages[-10:]
        assert max_gap(pings) < WATCHDOG_S, f"pings {pings} leave a gap above WatchdogSec"
        statuses = [f["STATUS"] for _, f in listener.messages if "STATUS" in f]
        line = r"cameras 1/1 up, [\d.]+ frames/s, [\d.]+ crops/s, 0 worker restarts"
        assert any(re.fullmatch(line, s) for s in statuses), statuses
        assert any(re.search(r"[1-9][\d.]* frames/s", s) for s in statuses), statuses

        terminated = time.monotonic()
        assert daemon.terminate(timeout=30) == 0
        assert listener.wait_for("STOPPING", "1", timeout=1, after=terminated)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_watchdog_pings_stop_while_detect_is_wedged_and_resume_after(
    listener: NotifyListener, looping_config: Path
) -> None:
    """A stopped detect process publishes no stats: pings must stop so systemd restarts the daemon."""
    with Daemon(looping_config) as daemon:
        listener.wait_for("READY", "1", timeout=90)
        listener.poll(3.0)
        assert listener.times("WATCHDOG"), "no ping while healthy"
        detect = daemon.child_pids("detect-")[-1]
        os.kill(detect, signal.SIGSTOP)
        try:
            wedged = time.monotonic()
            # detectable once the last detect stats (every 0.5 s) is older than the interval
            detectable = wedged + WATCHDOG_S + 0.5 + 0.5
            listener.poll(detectable - time.monotonic())
            listener.poll(2 * WATCHDOG_S)
            late = listener.times("WATCHDOG", after=detectable)
            assert not late, f"{len(late)} pings while detect was stopped"
            assert log_event(daemon, "pipeline_stalled")["reason"] == "no stats from detect"
        finally:
            os.kill(detect, signal.SIGCONT)
        resumed = time.monotonic()
        listener.wait_for("WATCHDOG", "1", timeout=15, after=resumed)
        assert daemon.terminate(timeout=30) == 0
