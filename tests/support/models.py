"""Detector models for tests: darknet cfgs and random weights written by the tests (never
downloaded), constant models whose output is known, and the shipped model in backup/."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from support.paths import ROOT
from textwatch.detect.darknet import parse_cfg

SHIPPED_CFG = ROOT / "backup" / "textwatch-tiny.cfg"
SHIPPED_WEIGHTS = ROOT / "backup" / "textwatch-tiny.weights"

ANCHORS = "10,14, 23,27, 37,58, 81,82, 135,169, 344,319"


def _conv(filters: int, size: int, stride: int = 1, act: str = "leaky", bn: bool = True) -> str:
    bn_line = "batch_normalize=1\n" if bn else ""
    return f"[convolutional]\n{bn_line}filters={filters}\nsize={size}\nstride={stride}\npad=1\nactivation={act}\n\n"


def _csp_block(filters: int) -> str:
    """yolov4-tiny's route-groups block: conv, half, conv, conv, concat, conv, concat, pool."""
    return (
        _conv(filters, 3)
        + "[route]\nlayers=-1\ngroups=2\ngroup_id=1\n\n"
        + _conv(filters // 2, 3)
        + _conv(filters // 2, 3)
        + "[route]\nlayers=-1,-2\n\n"
        + _conv(filters, 1)
        + "[route]\nlayers=-6,-1\n\n"
        + "[maxpool]\nsize=2\nstride=2\n\n"
    )


def _yolo(mask: str, classes: int) -> str:
    return (
        f"[yolo]\nmask={mask}\nanchors={ANCHORS}\nclasses={classes}\nnum=6\n"
        "scale_x_y=1.05\nignore_thresh=.7\ntruth_thresh=1\n\n"
    )


def yolov4_tiny_cfg(width: int = 416, height: int = 416, classes: int = 1) -> str:
    """The standard yolov4-tiny topology (two heads, strides 32 and 16)."""
    out = 3 * (classes + 5)
    return (
        f"[net]\nbatch=1\nwidth={width}\nheight={height}\nchannels=3\n\n"
        + _conv(32, 3, 2)
        + _conv(64, 3, 2)
        + _csp_block(64)
        + _csp_block(128)
        + _csp_block(256)
        + _conv(512, 3)
        + _conv(256, 1)
        + _conv(512, 3)
        + _conv(out, 1, act="linear", bn=False)
        + _yolo("3,4,5", classes)
        + "[route]\nlayers=-4\n\n"
        + _conv(128, 1)
        + "[upsample]\nstride=2\n\n"
        + "[route]\nlayers=-1,23\n\n"
        + _conv(256, 3)
        + _conv(out, 1, act="linear", bn=False)
        + _yolo("0,1,2", classes)
    )


def write_random_weights(cfg: Path, weights: Path, seed: int = 0, truncate: int = 0) -> None:
    """Darknet weights of the right size with plausible values (BN variances positive)."""
    model = parse_cfg(cfg)
    rng = np.random.default_rng(seed)
    parts = [np.array([0, 2, 5], dtype="<i4").tobytes(), np.array([0], dtype="<u8").tobytes()]
    for layer in model.layers:
        if layer.kind != "convolutional":
            continue
        sec = layer.section
        filters, size, groups = sec.int("filters", 1), sec.int("size", 1), sec.int("groups", 1)
        in_ch = model.layers[layer.index - 1].out_channels if layer.index else model.channels
        values = [rng.normal(0, 0.1, filters)]  # biases
        if sec.int("batch_normalize", 0):
            values += [rng.uniform(0.5, 1.5, filters), rng.normal(0, 0.1, filters), rng.uniform(0.5, 2.0, filters)]
        fan_in = in_ch // groups * size * size
        values.append(rng.normal(0, 1.0 / np.sqrt(fan_in), filters * fan_in))
        parts.append(np.concatenate(values).astype("<f4").tobytes())
    data = b"".join(parts)
    weights.write_bytes(data[: len(data) - truncate] if truncate else data)


def constant_model(
    folder: Path, name: str, pool: int, anchor: tuple[int, int], objectness: float, cls: float
) -> tuple[Path, Path]:
    """A detector whose output does not depend on the image: a `pool` x `pool` max-pool makes
    a 64/pool grid, and a 1x1 convolution with zero weights outputs its biases (tx, ty, tw,
    th = 0), so every cell predicts one `anchor`-sized box with the given logits."""
    cfg, weights = folder / f"{name}.cfg", folder / f"{name}.weights"
    cfg.write_text(
        "[net]\nwidth=64\nheight=64\nchannels=3\n\n"
        f"[maxpool]\nsize={pool}\nstride={pool}\n\n"
        "[convolutional]\nfilters=6\nsize=1\nstride=1\npad=1\nactivation=linear\n\n"
        f"[yolo]\nmask=0\nanchors={anchor[0]},{anchor[1]}\nclasses=1\nnum=1\nscale_x_y=1.0\n"
    )
    header = np.array([0, 2, 5], "<i4").tobytes() + np.array([0], "<u8").tobytes()
    biases = np.array([0, 0, 0, 0, objectness, cls], "<f4").tobytes()
    weights.write_bytes(header + biases + np.zeros(6 * 3, "<f4").tobytes())
    return cfg, weights


def whole_frame_model(folder: Path) -> tuple[Path, Path]:
    """One 64x64 cell over the 64x64 input whose box is the whole input (objectness logit 8)."""
    return constant_model(folder, "whole", 64, (64, 64), 8.0, 8.0)


def needs_shipped_model() -> None:
    if not SHIPPED_WEIGHTS.exists():
        pytest.skip("backup/textwatch-tiny.weights is not trained yet (issue 3)")
