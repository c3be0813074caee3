"""A real daemon in a subprocess, a real subscriber, and inputs with known text.

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
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import zmq

from cfgs import constant_model
from rtsp_server import free_port
from textwatch.tools.samples import line_crop

def whole_frame_model(folder: Path) -> tuple[Path, Path]:
    """One 64x64 cell over the 64x64 input whose box is the whole input (objectness logit 8)."""
    return constant_model(folder, "whole", 64, (64, 64), 8.0, 8.0)


def write_line_clip(path: Path, texts: list[str], frames_each: int = 10, fps: float = 10.0) -> Path:
    """An MP4 showing each text as one tight line for `frames_each` frames, in order."""
    crops = [line_crop(text, height=56) for text in texts]
    width = max(c.shape[1] for c in crops) + 32
    width += width % 2
    size = (width, 64)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    for crop in crops:
        frame = np.full((64, width, 3), 255, np.uint8)
        frame[4 : 4 + crop.shape[0], 8 : 8 + crop.shape[1]] = crop
        for _ in range(frames_each):
            writer.write(frame)
    writer.release()
    return path


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
        exe = Path(sys.executable).with_name("textwatch")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.handle = open(self.log, "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [str(exe), "run", "-c", str(config)], stdout=self.handle, stderr=subprocess.STDOUT,
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


class Subscriber:
    """A SUB socket on the daemon's publish endpoint; every wait has a deadline."""

    def __init__(self, endpoint: str, topics: tuple[str, ...] = ("",)) -> None:
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.SUB)
        self.socket.setsockopt(zmq.LINGER, 0)
        for topic in topics:
            self.socket.setsockopt_string(zmq.SUBSCRIBE, topic)
        self.socket.connect(endpoint)
        self.seen: list[tuple[str, dict[str, Any]]] = []

    def wait_for(self, predicate: Callable[[str, dict[str, Any]], bool], timeout: float) -> tuple[str, dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if not self.socket.poll(int(left * 1000) + 1):
                continue
            topic, body = self.socket.recv_multipart()
            message = (topic.decode(), json.loads(body))
            self.seen.append(message)
            if predicate(*message):
                return message
        kinds = sorted({t for t, _ in self.seen})
        raise TimeoutError(f"no matching message within {timeout}s; saw {len(self.seen)} messages of {kinds}")

    def close(self) -> None:
        self.socket.close()
        self.context.term()

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def text_is(expected: str) -> Callable[[str, dict[str, Any]], bool]:
    return lambda topic, body: topic.startswith("text.") and body.get("text") == expected


def event_is(kind: str) -> Callable[[str, dict[str, Any]], bool]:
    return lambda topic, body: topic.startswith("event.") and body.get("event") == kind
