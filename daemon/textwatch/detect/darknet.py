"""Darknet cfg files of the YOLOv4 family: parsing, shape inference, weights size.

Both runtimes (OpenCV DNN and the PyTorch backend) and the trainer read a model
through this module, so they agree on what a cfg means. We parse the cfg
ourselves, before OpenCV sees it, for two reasons: OpenCV answers a truncated or
mismatched weights file with a C++ assertion (or silently garbage outputs), and
decoding the [yolo] outputs needs the anchors, masks and scale_x_y, which OpenCV
does not expose.

Supported sections: [net], [convolutional] (batch_normalize, groups, leaky /
mish / linear / logistic / relu / swish), [route] (layers, groups, group_id),
[shortcut], [maxpool], [upsample], [yolo]. That covers yolov4, yolov4-tiny,
yolov4-tiny-3l and the seed's text.cfg.

Weights file layout (darknet `save_weights`): int32 major, minor, revision; then
`seen` as uint64 when major*10+minor >= 2 (else int32); then float32 parameters
of every convolutional layer in order: biases, [scales, rolling_mean,
rolling_var if batch_normalize], weights (filters x in/groups x size x size).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from textwatch.errors import ModelError

SUPPORTED = {"net", "convolutional", "route", "shortcut", "maxpool", "upsample", "yolo"}
ACTIVATIONS = {"leaky", "mish", "linear", "logistic", "relu", "swish"}
_SECTION = re.compile(r"^\[(\w+)\]$")


@dataclass
class Section:
    """One [section] of a cfg: its type, raw options and where it starts."""

    kind: str
    options: dict[str, str]
    line: int

    def int(self, key: str, default: int) -> int:
        return int(self.options.get(key, default))

    def float(self, key: str, default: float) -> float:
        return float(self.options.get(key, default))

    def str(self, key: str, default: str) -> str:
        return self.options.get(key, default).strip()

    def ints(self, key: str) -> list[int]:
        raw = self.options.get(key, "")
        return [int(v) for v in raw.split(",") if v.strip()]


@dataclass
class Layer:
    """A network layer (every section after [net]) with its inferred output shape."""

    index: int
    section: Section
    out_channels: int
    stride: int  # input pixels per output cell along each axis
    inputs: list[int] = field(default_factory=list)  # absolute indices this layer reads

    @property
    def kind(self) -> str:
        return self.section.kind


@dataclass(frozen=True)
class YoloHead:
    """What is needed to decode one [yolo] output: anchors in input pixels and the grid stride."""

    layer: int
    anchors: tuple[tuple[float, float], ...]
    classes: int
    scale_x_y: float
    stride: int
    new_coords: bool


@dataclass
class DarknetModel:
    """A parsed cfg: [net] options plus the layers with inferred shapes."""

    path: Path
    net: Section
    layers: list[Layer]

    @property
    def width(self) -> int:
        return self.net.int("width", 416)

    @property
    def height(self) -> int:
        return self.net.int("height", 416)

    @property
    def channels(self) -> int:
        return self.net.int("channels", 3)

    def heads(self) -> list[YoloHead]:
        return [_yolo_head(layer) for layer in self.layers if layer.kind == "yolo"]

    def parameter_count(self) -> int:
        """Number of float32 values the weights file must hold after its header."""
        total = 0
        for layer in self.layers:
            if layer.kind != "convolutional":
                continue
            sec = layer.section
            in_ch = self.layers[layer.index - 1].out_channels if layer.index else self.channels
            filters, size, groups = sec.int("filters", 1), sec.int("size", 1), sec.int("groups", 1)
            per_filter = 4 if sec.int("batch_normalize", 0) else 1
            total += filters * per_filter + filters * (in_ch // groups) * size * size
        return total


def read_sections(path: Path) -> list[Section]:
    """Split a cfg file into sections; raise ModelError if it is not darknet syntax."""
    try:
        text = path.read_text(encoding="utf-8", errors="strict")
    except FileNotFoundError:
        raise ModelError(f"model cfg not found: {path}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ModelError(f"model cfg {path} is not readable text: {err}") from None
    sections: list[Section] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].split(";", 1)[0].strip()
        if not line:
            continue
        header = _SECTION.match(line)
        if header:
            sections.append(Section(header.group(1).lower(), {}, number))
        elif "=" in line and sections:
            key, value = line.split("=", 1)
            sections[-1].options[key.strip()] = value.strip()
        else:
            raise ModelError(f"{path}:{number}: not a darknet cfg line: {raw.strip()[:60]!r}")
    if not sections or sections[0].kind not in ("net", "network"):
        raise ModelError(f"{path} is not a darknet cfg: it must start with a [net] section")
    return sections


def parse_cfg(path: str | Path) -> DarknetModel:
    """Parse a YOLOv4-family cfg and infer every layer's channels and stride."""
    path = Path(path)
    sections = read_sections(path)
    net, body = sections[0], sections[1:]
    layers: list[Layer] = []
    try:
        for index, sec in enumerate(body):
            layers.append(_infer_layer(index, sec, layers, net.int("channels", 3)))
    except (ValueError, IndexError, KeyError) as err:
        raise ModelError(f"{path}: bad [{sec.kind}] section at line {sec.line}: {err}") from None
    if not any(layer.kind == "yolo" for layer in layers):
        raise ModelError(f"{path} has no [yolo] layer: not a YOLO detector cfg")
    return DarknetModel(path, net, layers)


def _infer_layer(index: int, sec: Section, done: list[Layer], net_channels: int) -> Layer:
    """Output channels and stride of one section, given the layers before it."""
    if sec.kind not in SUPPORTED or sec.kind == "net":
        raise ValueError(f"unsupported section type [{sec.kind}]")
    prev_ch = done[-1].out_channels if done else net_channels
    prev_stride = done[-1].stride if done else 1
    prev = [index - 1] if index else []
    if sec.kind == "convolutional":
        act = sec.str("activation", "logistic")
        if act not in ACTIVATIONS:
            raise ValueError(f"unsupported activation {act!r}")
        if sec.int("groups", 1) < 1 or prev_ch % sec.int("groups", 1):
            raise ValueError("groups must divide the input channels")
        return Layer(index, sec, sec.int("filters", 1), prev_stride * sec.int("stride", 1), prev)
    if sec.kind == "route":
        refs = [r if r >= 0 else index + r for r in sec.ints("layers")]
        if not refs or any(r < 0 or r >= index for r in refs):
            raise ValueError(f"route layers {sec.options.get('layers')} point outside the network")
        groups = sec.int("groups", 1)
        channels = sum(done[r].out_channels for r in refs) // groups
        return Layer(index, sec, channels, done[refs[0]].stride, refs)
    if sec.kind == "shortcut":
        ref = sec.int("from", -1)
        ref = ref if ref >= 0 else index + ref
        if not 0 <= ref < index:
            raise ValueError("shortcut 'from' points outside the network")
        return Layer(index, sec, prev_ch, prev_stride, [index - 1, ref])
    if sec.kind == "maxpool":
        return Layer(index, sec, prev_ch, prev_stride * sec.int("stride", 1), prev)
    if sec.kind == "upsample":
        return Layer(index, sec, prev_ch, max(1, prev_stride // sec.int("stride", 2)), prev)
    return Layer(index, sec, prev_ch, prev_stride, prev)  # yolo


def _yolo_head(layer: Layer) -> YoloHead:
    sec = layer.section
    flat = [float(v) for v in sec.options.get("anchors", "").split(",") if v.strip()]
    pairs = list(zip(flat[0::2], flat[1::2]))
    mask = sec.ints("mask") or list(range(len(pairs)))
    return YoloHead(
        layer=layer.index,
        anchors=tuple(pairs[m] for m in mask),
        classes=sec.int("classes", 1),
        scale_x_y=sec.float("scale_x_y", 1.0),
        stride=layer.stride,
        new_coords=bool(sec.int("new_coords", 0)),
    )


def weights_header_size(major: int, minor: int) -> int:
    """12 bytes of version plus `seen` (8 bytes from format 0.2 on, 4 before)."""
    return 12 + (8 if major * 10 + minor >= 2 and major < 1000 and minor < 1000 else 4)


def check_weights(model: DarknetModel, weights: str | Path) -> int:
    """Raise ModelError unless the weights file has exactly the size the cfg implies.

    Returns the file size. Catching this here turns OpenCV's assertion (or, for an
    oversized file, silently wrong outputs) into one line naming both sizes.
    """
    weights = Path(weights)
    try:
        actual = weights.stat().st_size
        with weights.open("rb") as handle:
            version = np.frombuffer(handle.read(12), dtype="<i4")
    except FileNotFoundError:
        raise ModelError(f"model weights not found: {weights}") from None
    except OSError as err:
        raise ModelError(f"model weights {weights} not readable: {err}") from None
    if len(version) < 3:
        raise ModelError(f"model weights {weights} is {actual} bytes: too short for a darknet header")
    expected = weights_header_size(int(version[0]), int(version[1])) + 4 * model.parameter_count()
    if actual != expected:
        raise ModelError(
            f"model weights {weights} is {actual} bytes but {model.path.name} needs {expected} "
            f"({model.parameter_count()} float32 parameters plus header): truncated or for another cfg"
        )
    return actual
