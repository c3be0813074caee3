"""Real daemons in subprocesses (the whole daemon, or some of its processes), and their config.

The detector used here is a *whole-frame* model: a darknet cfg whose single
[yolo] cell always predicts one box covering the entire input. With clips made
of one tight line of text, every frame yields exactly one crop holding that
line, so these tests pin the streaming machinery (capture, sockets, workers,
publisher, supervisor) independently of how well the trained detector does.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tomllib
from functools import cached_property
from pathlib import Path
from typing import IO, Any

import pytest
import zmq

from support.cli import textwatch_exe
from support.models import whole_frame_model
from support.ports import free_port
from support.subscriber import Subscriber
from textwatch import bus
from textwatch.config import Settings, load_settings


def daemon_config(
    folder: Path, url: str, *, workers: int = 1, extra: str = "", metrics_port: int | None = None,
    shipped_detector: bool = False, default_engine: str = "tesserocr", history: Path | None = None, **camera: object,
) -> Path:
    """A config for the whole-frame model, one camera, private ipc dir and a free TCP port.

    `default_engine` is the daemon's ocr.engine. These daemons pin the streaming machinery, so
    they read with tesserocr, ~4x faster per crop on the CI's 2 cores than the shipped default
    (ppocr); daemon/test_daemon_ppocr.py runs both engines in a daemon, and process/test_ppocr.py
    the engine itself. A camera's own engine is the camera key `ocr_engine`.

    `shipped_detector` uses the trained model in backup/ with its default settings instead.

    `history` is the history database of a daemon that keeps one; without it [history] is off,
    so the other daemons neither start that process nor write to the user's state folder.

    `extra` is appended inside [bus]. The metrics endpoint is off unless `metrics_port` is given
    (then it listens on 127.0.0.1:metrics_port), so parallel daemons never fight over 9108.
    """
    metrics = f'enabled = true\nlisten = "127.0.0.1:{metrics_port}"' if metrics_port else "enabled = false"
    cfg, weights = whole_frame_model(folder)
    # The whole-frame model's one box is the whole frame: no line geometry (detect/lines.py) on it.
    detector = "" if shipped_detector else (
        f'cfg = "{cfg}"\nweights = "{weights}"\npadding = 0.0\ntiling = "off"\nrefine_lines = false'
    )
    camera_lines = "".join(f"{k} = {json.dumps(v)}\n" for k, v in camera.items())
    text = f"""
[detector]
{detector}

[[cameras]]
id = "cam1"
url = "{url}"
{camera_lines}
[pipeline]
workers = {workers}
stats_interval_s = 0.5
shutdown_grace_s = 3.0
restart_budget = 20

[bus]
runtime_dir = "{folder / 'run'}"
publish = "tcp://127.0.0.1:{free_port()}"
{extra}

[metrics]
{metrics}

[ocr]
engine = "{default_engine}"

[history]
{f'database = "{history}"' if history else "enabled = false"}
"""
    path = folder / "textwatch.toml"
    path.write_text(text)
    return path


def publish_endpoint(config: Path) -> str:
    """Where the daemon of `config` publishes (read from the file, before any daemon runs)."""
    return tomllib.loads(config.read_text())["bus"]["publish"]


class Daemon:
    """Real textwatch processes from one config, each in its own session and log file; all killed at exit.

    `Daemon(config)` is the whole daemon, `textwatch run -c CONFIG`: the supervisor, which starts
    detect, the OCR workers and the publisher itself. `Daemon(config, processes)` starts only the
    given processes (name -> command line) for a test that plays the others: process/test_bus.py
    runs a publisher and a worker, and plays detect through `play_detect()`.
    """

    def __init__(self, config: Path, processes: dict[str, list[str]] | None = None) -> None:
        self.config = config
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: dict[str, Path] = {}
        self.push: zmq.Socket | None = None
        self._handles: list[IO[str]] = []
        try:
            for name, command in (processes or {"daemon": [str(textwatch_exe()), "run", "-c", str(config)]}).items():
                self.start(name, command)
        except BaseException:
            self.stop()
            raise

    def start(self, name: str, command: list[str]) -> None:
        """Start one more process (name -> command line) with its own log: a test that starts
        the daemon's processes in an order the supervisor never would."""
        log = self.config.parent / f"{name}.log"
        handle = open(log, "w")  # noqa: SIM115 - closed in stop()
        self._handles.append(handle)
        self.logs[name] = log
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.processes[name] = subprocess.Popen(
            command, stdout=handle, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )

    @property
    def process(self) -> subprocess.Popen[bytes]:
        """The first process started: the supervisor of a whole daemon."""
        return next(iter(self.processes.values()))

    @cached_property
    def settings(self) -> Settings:
        return load_settings(self.config)

    @cached_property
    def endpoints(self) -> bus.Endpoints:
        return bus.Endpoints.from_settings(self.settings)

    @property
    def ctx(self) -> zmq.Context:
        """The test process's one ZeroMQ context."""
        return zmq.Context.instance()

    def play_detect(self) -> zmq.Socket:
        """Bind detect's crops PUSH in the test (for a Daemon started without detect); kept as `push`."""
        self.push = bus.crop_pusher(self.ctx, self.endpoints, self.settings)
        return self.push

    def subscriber(self, *prefixes: str, rcvhwm: int = 1000, timeout: float = 10.0) -> Subscriber:
        """A Subscriber to `prefixes` and stats on the publish endpoint, returned once it
        demonstrably receives: a stats message has arrived (the publisher has our subscription)."""
        sub = Subscriber(self.endpoints.publish, (*prefixes, "stats"), rcvhwm=rcvhwm)
        try:
            sub.wait_for(lambda topic, _: topic == "stats", timeout=timeout)
        except BaseException:
            sub.close()
            raise
        return sub

    def terminate(self, timeout: float, name: str | None = None) -> int:
        """SIGTERM to one process alone (by default the first: the supervisor, as systemd's
        KillMode=mixed does); its exit code. One that ignores it for `timeout` s is killed and
        fails the test."""
        name = name or next(iter(self.processes))
        process = self.processes[name]
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
            pytest.fail(f"{name} ignored SIGTERM for {timeout} s; its log ends:\n{self.log_text(name)[-3000:]}")

    def terminate_all(self, timeout: float) -> dict[str, int]:
        """SIGTERM to every process in turn, the last started first; their exit codes by name."""
        return {name: self.terminate(timeout, name) for name in reversed(list(self.processes))}

    def stop(self) -> None:
        """Kill what still runs (each process with its session), close the logs and our PUSH."""
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        for handle in self._handles:
            handle.close()
        if self.push is not None:
            self.push.close(linger=0)

    def log_text(self, name: str | None = None) -> str:
        """The log of one process (by default the first: the supervisor's)."""
        return self.logs[name or next(iter(self.logs))].read_text(errors="replace")

    def log_events(self) -> list[dict[str, Any]]:
        """The JSON lines of the supervisor's log (structlog events)."""
        events = []
        for line in self.log_text().splitlines():
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return events

    def child_pids(self, prefix: str) -> list[int]:
        """PIDs of the children whose name starts with `prefix`, from the supervisor's log."""
        return [e["pid"] for e in self.log_events() if e.get("event") == "child_started" and e["child"].startswith(prefix)]

    def __enter__(self) -> Daemon:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        self.stop()
        if exc_type is not None:
            self.show_logs()

    def show_logs(self, lines: int = 60) -> None:
        """Print the end of every log, for the report of a failed test: a failure under
        load is seldom reproduced at a desk, and its log is the evidence."""
        for name, path in self.logs.items():
            print(f"----- {name}.log, last {lines} lines -----")
            print("\n".join(path.read_text(errors="replace").splitlines()[-lines:]))
