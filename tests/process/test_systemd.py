"""systemd: the unit file (verify, security exposure) and sd_notify spoken by a real daemon.

The notify tests bind a real AF_UNIX datagram socket, start `textwatch run`
with NOTIFY_SOCKET and WATCHDOG_USEC pointing at it (as systemd would), and
read what the supervisor says: READY=1 after progress, WATCHDOG=1 while text
flows and not while detect is wedged, STATUS= lines, STOPPING=1 on SIGTERM.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support.clips import write_line_clip
from support.daemon import Daemon, daemon_config, publish_endpoint
from support.paths import ROOT
from support.subscriber import Subscriber, text_is
from textwatch.processes import systemd
from textwatch.config import PipelineSettings
from textwatch.processes.systemd import Progress

UNIT = ROOT / "systemd" / "textwatch.service"
INSTALLED_EXE = "/opt/textwatch/.venv/bin/textwatch"
TEXT = "TEXTWATCH 42"
WATCHDOG_S = 2.0
MAX_EXPOSURE = 3.0


# ---------------------------------------------------------------- the unit file


def systemd_analyze() -> str:
    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.skip("systemd-analyze is not installed (apt install systemd)")
    return exe


def local_unit(folder: Path) -> Path:
    """The unit with ExecStart/ExecStartPre pointing at this venv's textwatch:
    verify checks that the binaries exist, and /opt/textwatch is not installed here."""
    text = UNIT.read_text()
    assert INSTALLED_EXE in text
    path = folder / "textwatch.service"
    path.write_text(text.replace(INSTALLED_EXE, str(Path(sys.executable).with_name("textwatch"))))
    return path


def unit_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    exe = systemd_analyze()
    unit = local_unit(tmp_path)
    result = subprocess.run([exe, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60)
    ours = [line for line in (result.stdout + result.stderr).splitlines() if "textwatch.service" in line]
    assert result.returncode == 0 and not ours, result.stdout + result.stderr


def test_unit_security_exposure_is_at_most_3(tmp_path: Path) -> None:
    exe = systemd_analyze()
    unit = local_unit(tmp_path)
    result = subprocess.run(
        [exe, "security", "--offline=yes", "--no-pager", str(unit)], capture_output=True, text=True, timeout=60
    )
    match = re.search(r"Overall exposure level for textwatch\.service: (\d+(?:\.\d+)?)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, result.stdout


def test_unit_keeps_the_exit_code_and_shutdown_contract() -> None:
    unit = unit_settings()
    assert unit["Type"] == ["notify"] and unit["NotifyAccess"] == ["main"]
    assert unit["KillMode"] == ["mixed"], "SIGTERM must reach the supervisor alone: it stops children in stages"
    assert unit["RestartPreventExitStatus"] == ["78"] and unit["Restart"] == ["on-failure"]
    grace = PipelineSettings().shutdown_grace_s
    own_deadline = 2 * grace + 2.0 + 3 * 2.0  # detect + workers, publisher, joins after KILL
    assert float(unit["TimeoutStopSec"][0]) > own_deadline
    assert float(unit["WatchdogSec"][0]) >= 4 * PipelineSettings().stats_interval_s


# ---------------------------------------------------------------- sd_notify, in-process


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A bound AF_UNIX datagram socket and NOTIFY_SOCKET naming it."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify.sock"
    sock.bind(str(path))
    sock.settimeout(5)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    yield sock
    sock.close()


def test_notify_sends_one_datagram_of_key_value_lines(notify_socket: socket.socket) -> None:
    assert systemd.notify(READY=1, STATUS="cameras 1/1 up,\nnewline flattened")
    assert notify_socket.recv(4096) == b"READY=1\nSTATUS=cameras 1/1 up, newline flattened"


def test_notify_reaches_an_abstract_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"textwatch-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert systemd.notify(WATCHDOG=1)
        assert sock.recv(4096) == b"WATCHDOG=1"


def test_notify_is_a_no_op_without_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert systemd.notify(READY=1) is False


def test_watchdog_interval_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    assert systemd.watchdog_interval() is None
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    assert systemd.watchdog_interval() == 30.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert systemd.watchdog_interval() == 30.0
    monkeypatch.setenv("WATCHDOG_PID", "1")  # the watchdog belongs to another process
    assert systemd.watchdog_interval() is None


def test_local_address_turns_wildcards_into_loopback() -> None:
    assert systemd.local_address("tcp://*:5560") == "tcp://127.0.0.1:5560"
    assert systemd.local_address("tcp://0.0.0.0:5560") == "tcp://127.0.0.1:5560"
    assert systemd.local_address("tcp://[::]:5560") == "tcp://[::1]:5560"
    assert systemd.local_address("tcp://10.0.0.5:5560") == "tcp://10.0.0.5:5560"


def detect_stats(frames: int, up: bool = True) -> dict:
    return {"process": "detect-0", "role": "detect", "frames": frames, "cameras": {"cam1": {"up": up}}}


def worker_stats(name: str, crops_read: int) -> dict:
    return {"process": name, "role": "worker", "crops_read": crops_read}


def test_progress_ready_needs_every_worker_and_a_frame() -> None:
    progress = Progress(workers=("ocr-0", "ocr-1"), ready_wait_s=10)
    progress.observe(detect_stats(frames=5), now=1)
    progress.observe(worker_stats("ocr-0", 0), now=1)
    assert not progress.ready(now=1)
    progress.observe(worker_stats("remote-1", 0), now=1)  # a remote worker does not count
    assert not progress.ready(now=1)
    progress.observe(worker_stats("ocr-1", 0), now=1)
    assert progress.ready(now=1)


def test_progress_ready_after_the_open_timeout_when_every_camera_is_down() -> None:
    """A camera down at boot must not hold READY back past TimeoutStartSec (a start-up restart loop)."""
    progress = Progress(workers=("ocr-0",), ready_wait_s=10)
    progress.observe(detect_stats(frames=0, up=False), now=0)
    progress.observe(worker_stats("ocr-0", 0), now=0)
    assert not progress.ready(now=5)
    assert progress.ready(now=10)
    assert progress.status(worker_restarts=0).startswith("cameras 0/1 up")


def test_progress_stalled_reasons() -> None:
    window = 2.0
    progress = Progress(workers=("ocr-0",), ready_wait_s=10)
    for t in range(5):
        progress.observe(detect_stats(frames=10 * t), now=t)
        progress.observe(worker_stats("ocr-0", 10 * t), now=t)
    assert progress.stalled(now=4.5, window=window) is None
    # detect silent: stopped, or stuck in a forward
    assert progress.stalled(now=6.5, window=window) == "no stats from detect"
    # detect reports, but no frame moves while the camera says up
    for t in (5, 6, 7):
        progress.observe(detect_stats(frames=40), now=t)
        progress.observe(worker_stats("ocr-0", 40), now=t)
    assert "no frame or crop progress" in progress.stalled(now=7, window=window)
    # every camera down: reconnecting is all detect can do, and it is alive
    progress.observe(detect_stats(frames=40, up=False), now=7)
    assert progress.stalled(now=7, window=window) is None
    # a silent worker (stuck in Tesseract)
    progress.observe(detect_stats(frames=50), now=9.5)
    assert progress.stalled(now=9.5, window=window) == "no stats from ocr-0"


# ---------------------------------------------------------------- sd_notify from a real daemon


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
    deadline = time.monotonic() + timeout
    while not (events := [e for e in daemon.log_events() if e.get("event") == name]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert events, f"no {name} in the daemon log:\n{daemon.log_text()[-3000:]}"
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

