"""systemd: the unit file (verify, security exposure), sd_notify in-process, the progress rules.

The in-process notify tests read a real AF_UNIX datagram socket (conftest's
notify_socket). sd_notify spoken by a real daemon is in daemon/test_daemon_systemd.py.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support.paths import ROOT
from textwatch import wire
from textwatch.processes import systemd
from textwatch.config import PipelineSettings
from textwatch.processes.systemd import Progress

UNIT = ROOT / "systemd" / "textwatch.service"
INSTALLED_EXE = "/opt/textwatch/.venv/bin/textwatch"
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


def detect_stats(frames: int, up: bool = True) -> wire.DetectStats:
    camera = wire.CameraStats(frames_read=frames, frames_skipped=0, frames_delivered=frames, reconnects=0, stalls=0,
                              read_errors=0, up=up, crops_sent=0)
    return wire.DetectStats(process="detect-0", ts=0.0, frames=frames, batches=frames, detect_ms_total=0.0,
                            detect_ms_avg=0.0, crops_sent=0, crops_dropped={}, cameras={"cam1": camera},
                            ocr_skipped={}, regions_ignored={})


def worker_stats(name: str, crops_read: int) -> wire.WorkerStats:
    return wire.WorkerStats(process=name, ts=0.0, crops_read=crops_read, text=crops_read, empty=0, failed=0,
                            timeouts=0, rejected=0, ocr_ms_total=0.0)


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
