"""A real daemon in a subprocess, and its config.

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
from pathlib import Path
from typing import Any

from support.cli import textwatch_exe
from support.models import whole_frame_model
from support.ports import free_port


def daemon_config(
    folder: Path, url: str, *, workers: int = 1, extra: str = "", metrics_port: int | None = None,
    shipped_detector: bool = False, **camera: object,
) -> Path:
    """A config for the whole-frame model, one camera, private ipc dir and a free TCP port.

    `shipped_detector` uses the trained model in backup/ with its default settings instead.

    `extra` is appended inside [bus]. The metrics endpoint is off unless `metrics_port` is given
    (then it listens on 127.0.0.1:metrics_port), so parallel daemons never fight over 9108.
    """
    metrics = f'enabled = true\nlisten = "127.0.0.1:{metrics_port}"' if metrics_port else "enabled = false"
    cfg, weights = whole_frame_model(folder)
    detector = "" if shipped_detector else f'cfg = "{cfg}"\nweights = "{weights}"\npadding = 0.0\ntiling = "off"'
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
"""
    path = folder / "textwatch.toml"
    path.write_text(text)
    return path


def publish_endpoint(config: Path) -> str:
    import tomllib

    return tomllib.loads(config.read_text())["bus"]["publish"]


class Daemon:
    """`textwatch run -c CONFIG` in its own session; always killed at exit."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.log = config.parent / "daemon.log"
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.handle = open(self.log, "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [str(textwatch_exe()), "run", "-c", str(config)], stdout=self.handle, stderr=subprocess.STDOUT,
            env=env, start_new_session=True,
        )

    def terminate(self, timeout: float) -> int:
        """SIGTERM to the supervisor alone (as systemd's KillMode=mixed does); its exit code."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self.handle.close()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def log_events(self) -> list[dict[str, Any]]:
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

    def __exit__(self, *exc: object) -> None:
        self.stop()
