"""Fixtures shared by the kinds of test (unit, process, daemon): model files, configs, keys, NOTIFY_SOCKET.

Helpers that tests import live in the `support` package (tests/support), which
pyproject's `pythonpath = ["tests"]` makes importable.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from support.keys import Keys
from support.models import write_random_weights, yolov4_tiny_cfg


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A yolov4-tiny cfg (416x416, 1 class) with random weights of exactly the right size."""
    folder = tmp_path_factory.mktemp("model")
    cfg, weights = folder / "tiny.cfg", folder / "tiny.weights"
    cfg.write_text(yolov4_tiny_cfg())
    write_random_weights(cfg, weights)
    return cfg, weights


@pytest.fixture
def write_config(tmp_path: Path):
    """Write a TOML config into tmp_path and return its path."""

    def write(text: str, name: str = "textwatch.toml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    """CURVE key pairs for a daemon, an allow-listed client and a stranger (process and daemon security tests)."""
    return Keys(tmp_path)


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
