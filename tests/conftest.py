"""Shared fixtures: real model files written by the tests, real Tesseract, the shared data dir."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
sys.path.insert(0, str(Path(__file__).parent))

from cfgs import write_random_weights, yolov4_tiny_cfg  # noqa: E402

SHIPPED_CFG = ROOT / "backup" / "textwatch-tiny.cfg"
SHIPPED_WEIGHTS = ROOT / "backup" / "textwatch-tiny.weights"


def shared_path(*parts: str) -> Path:
    """A path under ../shared, skipping the test (with the reason) when it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent: the shared eval/train data sits beside the project only on dev machines")
    return path


def needs_shipped_model() -> None:
    if not SHIPPED_WEIGHTS.exists():
        pytest.skip("backup/textwatch-tiny.weights is not trained yet (issue 3)")


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


def run_cli(*args: str, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    """The real `textwatch` console script in a subprocess."""
    exe = Path(sys.executable).with_name("textwatch")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=timeout, env=env, **kwargs)
