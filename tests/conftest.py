"""Fixtures shared by every kind of test (unit, process, daemon): real model files, configs.

Helpers that tests import live in the `support` package (tests/support), which
pyproject's `pythonpath = ["tests"]` makes importable.
"""

from __future__ import annotations

from pathlib import Path

import pytest

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
