"""A darknet cfg as a torch module, with darknet-format weights in and out.

Inference runs under OpenCV DNN, so this module copies what OpenCV's darknet
importer (modules/dnn/src/darknet/darknet_io.cpp) builds, not what darknet
itself computes where the two differ. Measured against cv2 4.14 by
tests/unit/test_torch_model.py:

- BatchNorm: OpenCV uses y = (x - mean) / sqrt(var + 1e-6) * scale + bias
  (darknet divides by sqrt(var) + 1e-6). We train with eps=1e-6 so the exported
  rolling statistics mean the same thing to both runtimes.
- maxpool: padding defaults to size-1, split floor(p/2) before and ceil(p/2)
  after; padded cells never win the max. So size=2 stride=1 pads only the
  right and bottom edge, and size=2 stride=2 halves an even size exactly.
- [yolo]: OpenCV's Region layer returns, per cell and anchor (rows in y, x,
  anchor order), [cx, cy, w, h] normalised to the network input, the sigmoid
  objectness, and objectness * sigmoid(class) zeroed where <= the layer's
  `thresh` (cfg key, default 0.2). `decode` reproduces exactly that.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from textwatch.detect.darknet import DarknetModel, Layer, YoloHead, check_weights
from textwatch.errors import ModelError

BN_EPS = 1e-6  # OpenCV's darknet importer; see the module docstring
BN_MOMENTUM = 0.03
WEIGHTS_VERSION = (0, 2, 5)  # major, minor, revision: the format with a uint64 `seen`
YOLO_THRESH_DEFAULT = 0.2  # OpenCV's default for a [yolo] section without `thresh`


def _activation(name: str) -> nn.Module:
    """The torch module for a darknet activation name (darknet.py validated it)."""
    table: dict[str, nn.Module] = {
        "leaky": nn.LeakyReLU(0.1),
        "mish": nn.Mish(),
        "linear": nn.Identity(),
        "logistic": nn.Sigmoid(),
        "relu": nn.ReLU(),
        "swish": nn.SiLU(),
    }
    return table[name]


class ConvBlock(nn.Module):
    """[convolutional]: conv, optional batch norm (which replaces the bias), activation."""

    def __init__(self, layer: Layer, in_channels: int) -> None:
        super().__init__()
        sec = layer.section
        if "activation" not in sec.options:
            # darknet defaults to logistic, OpenCV to linear: spelled out, both runtimes agree
            raise ModelError(f"line {sec.line}: [convolutional] needs an explicit activation=")
        size = sec.int("size", 1)
        padding = size // 2 if sec.int("pad", 0) else sec.int("padding", 0)
        self.batch_normalize = bool(sec.int("batch_normalize", 0))
        self.conv = nn.Conv2d(
            in_channels,
            layer.out_channels,
            size,
            stride=sec.int("stride", 1),
            padding=padding,
            groups=sec.int("groups", 1),
            bias=not self.batch_normalize,
        )
        self.bn = nn.BatchNorm2d(layer.out_channels, eps=BN_EPS, momentum=BN_MOMENTUM) if self.batch_normalize else None
        self.act = _activation(sec.str("activation", "logistic"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return self.act(x)


class MaxPool(nn.Module):
    """[maxpool] padded as OpenCV does: floor(p/2) before, ceil(p/2) after, -inf fill."""

    def __init__(self, layer: Layer) -> None:
        super().__init__()
        sec = layer.section
        if "size" not in sec.options or "stride" not in sec.options:
            # darknet defaults stride to 1, OpenCV to 2: spelled out, both runtimes agree
            raise ModelError(f"line {sec.line}: [maxpool] needs explicit size= and stride=")
        self.size = sec.int("size", 2)
        self.stride = sec.int("stride", 2)
        pad = sec.int("padding", self.size - 1)
        self.pad = (pad // 2, pad - pad // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        before, after = self.pad
        if before or after:
            x = F.pad(x, (before, after, before, after), value=float("-inf"))
        return F.max_pool2d(x, self.size, self.stride)


class DarknetNet(nn.Module):
    """The network a parsed cfg describes; `forward` returns the raw input of each [yolo].

    Raw outputs (B x A*(5+C) x H x W) are what the loss wants; `decode` turns them
    into OpenCV-identical detections for inference.
    """

    def __init__(self, model: DarknetModel) -> None:
        super().__init__()
        self.model = model
        self.heads: list[YoloHead] = model.heads()
        self.blocks = nn.ModuleList(self._build(layer) for layer in model.layers)
        self._head_layers = {head.layer for head in self.heads}
        self._check_heads()

    def _build(self, layer: Layer) -> nn.Module:
        if layer.kind == "convolutional":
            prev = self.model.layers[layer.index - 1].out_channels if layer.index else self.model.channels
            return ConvBlock(layer, prev)
        if layer.kind == "maxpool":
            return MaxPool(layer)
        if layer.kind == "upsample":
            return nn.Upsample(scale_factor=layer.section.int("stride", 2), mode="nearest")
        if layer.kind == "shortcut":
            return _activation(layer.section.str("activation", "linear"))
        return nn.Identity()  # route and yolo are wiring, done in forward

    def _check_heads(self) -> None:
        """Each [yolo] must read exactly A*(5+C) channels, or decoding would misalign silently."""
        for head in self.heads:
            got = self.model.layers[head.layer - 1].out_channels
            want = len(head.anchors) * (5 + head.classes)
            if got != want:
                raise ModelError(
                    f"{self.model.path}: [yolo] layer {head.layer} reads {got} channels but its "
                    f"{len(head.anchors)} anchors and {head.classes} classes need filters={want}"
                )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs: list[torch.Tensor] = []
        heads: list[torch.Tensor] = []
        for layer, block in zip(self.model.layers, self.blocks):
            x = self._layer_forward(layer, block, x, outputs)
            outputs.append(x)
            if layer.index in self._head_layers:
                heads.append(x)
        return heads

    @staticmethod
    def _layer_forward(layer: Layer, block: nn.Module, x: torch.Tensor, outputs: list[torch.Tensor]) -> torch.Tensor:
        if layer.kind == "route":
            groups, group_id = layer.section.int("groups", 1), layer.section.int("group_id", 0)
            parts = [outputs[i].chunk(groups, dim=1)[group_id] if groups > 1 else outputs[i] for i in layer.inputs]
            return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        if layer.kind == "shortcut":
            return block(x + outputs[layer.inputs[1]])
        return block(x)

    def conv_blocks(self) -> list[ConvBlock]:
        """Convolutional blocks in cfg order: the order of the weights file."""
        return [block for block in self.blocks if isinstance(block, ConvBlock)]


def head_thresholds(model: DarknetModel) -> list[float]:
    """Each [yolo] layer's `thresh`, below which OpenCV zeroes the class score."""
    return [model.layers[h.layer].section.float("thresh", YOLO_THRESH_DEFAULT) for h in model.heads()]


def decode_head(
    raw: torch.Tensor, head: YoloHead, net_width: int, net_height: int, thresh: float = 0.0
) -> torch.Tensor:
    """One head's raw output -> B x (H*W*A) x (5+C) rows, exactly as OpenCV's Region layer.

    Rows are [cx, cy, w, h, objectness, objectness*class...] normalised to the
    network input, ordered by cell row, cell column, then anchor.
    """
    batch, _, rows, cols = raw.shape
    anchors = len(head.anchors)
    p = raw.float().view(batch, anchors, 5 + head.classes, rows, cols).permute(0, 3, 4, 1, 2)
    gy, gx = torch.meshgrid(
        torch.arange(rows, device=raw.device, dtype=torch.float32),
        torch.arange(cols, device=raw.device, dtype=torch.float32),
        indexing="ij",
    )
    grid_x, grid_y = gx[None, :, :, None], gy[None, :, :, None]
    anchor_wh = torch.tensor(head.anchors, device=raw.device, dtype=torch.float32)
    scale = head.scale_x_y
    if head.new_coords:
        xy, wh_factor, obj, cls = p[..., 0:2], p[..., 2:4] ** 2 * 4, p[..., 4], p[..., 5:]
    else:
        xy, wh_factor = torch.sigmoid(p[..., 0:2]), torch.exp(p[..., 2:4])
        obj, cls = torch.sigmoid(p[..., 4]), torch.sigmoid(p[..., 5:])
    cx = ((xy[..., 0] - 0.5) * scale + 0.5 + grid_x) / cols
    cy = ((xy[..., 1] - 0.5) * scale + 0.5 + grid_y) / rows
    w = wh_factor[..., 0] * anchor_wh[:, 0] / net_width
    h = wh_factor[..., 1] * anchor_wh[:, 1] / net_height
    prob = obj[..., None] * cls
    prob = torch.where(prob > thresh, prob, torch.zeros_like(prob))
    out = torch.cat([torch.stack([cx, cy, w, h, obj], dim=-1), prob], dim=-1)
    return out.reshape(batch, rows * cols * anchors, 5 + head.classes)


def decode(
    net: DarknetNet, outputs: list[torch.Tensor], thresh: float | None = None, size: tuple[int, int] | None = None
) -> list[torch.Tensor]:
    """All heads decoded for inference; `thresh=None` uses each [yolo]'s own, as OpenCV does.

    `size` (width, height) is the input the outputs came from: w and h are
    normalised by it, as OpenCV normalises by its input blob. None: the cfg's.
    """
    thresholds = head_thresholds(net.model) if thresh is None else [thresh] * len(net.heads)
    width, height = size if size is not None else (net.model.width, net.model.height)
    return [
        decode_head(raw, head, width, height, t)
        for raw, head, t in zip(outputs, net.heads, thresholds)
    ]


def _conv_tensors(block: ConvBlock) -> list[torch.Tensor]:
    """The tensors of one conv in weights-file order: biases, [scales, mean, var], weights."""
    if block.bn is not None:
        bn = block.bn
        assert bn.running_mean is not None and bn.running_var is not None  # track_running_stats
        return [bn.bias, bn.weight, bn.running_mean, bn.running_var, block.conv.weight]
    assert block.conv.bias is not None  # bias=True without batch norm
    return [block.conv.bias, block.conv.weight]


def load_darknet_weights(net: DarknetNet, path: str | Path) -> int:
    """Fill `net` from a darknet .weights file; return its `seen` counter.

    The size is checked against the cfg first, so a mismatched file is a
    ModelError naming both sizes rather than a half-loaded network.
    """
    path = Path(path)
    check_weights(net.model, path)
    data = path.read_bytes()
    major, minor, _ = np.frombuffer(data[:12], dtype="<i4")
    wide_seen = major * 10 + minor >= 2
    seen = int(np.frombuffer(data[12:20], dtype="<u8")[0]) if wide_seen else int(np.frombuffer(data[12:16], "<i4")[0])
    values = np.frombuffer(data, dtype="<f4", offset=20 if wide_seen else 16)
    offset = 0
    with torch.no_grad():
        for block in net.conv_blocks():
            for tensor in _conv_tensors(block):
                count = tensor.numel()
                chunk = torch.from_numpy(values[offset : offset + count].copy()).view_as(tensor)
                tensor.copy_(chunk)
                offset += count
    if offset != len(values):  # check_weights makes this unreachable unless the two disagree
        raise ModelError(f"{path}: read {offset} of {len(values)} parameters; cfg and loader disagree")
    return seen


def save_darknet_weights(net: DarknetNet, path: str | Path, seen: int) -> None:
    """Write `net` as a darknet .weights file (format 0.2.5, uint64 `seen`)."""
    path = Path(path)
    header = np.array(WEIGHTS_VERSION, dtype="<i4").tobytes() + np.array([seen], dtype="<u8").tobytes()
    parts = [header]
    with torch.no_grad():
        for block in net.conv_blocks():
            for tensor in _conv_tensors(block):
                parts.append(tensor.detach().to("cpu", torch.float32).contiguous().numpy().astype("<f4").tobytes())
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(b"".join(parts))
    tmp.replace(path)  # a reader never sees a half-written file
    check_weights(net.model, path)


def build_net(model: DarknetModel, seed: int | None = None) -> DarknetNet:
    """A freshly initialised network; head biases start at a low objectness prior.

    Without the prior every cell starts at objectness 0.5 and the background BCE
    swamps the first hundreds of steps (the YOLOv5/RetinaNet focal-loss init).
    """
    if seed is not None:
        torch.manual_seed(seed)
    net = DarknetNet(model)
    for head in net.heads:
        block = net.blocks[head.layer - 1]
        if isinstance(block, ConvBlock) and block.conv.bias is not None:
            with torch.no_grad():
                bias = block.conv.bias.view(len(head.anchors), 5 + head.classes)
                cells = (model.width / head.stride) * (model.height / head.stride)
                bias[:, 4] = math.log(8 / cells)  # about 8 objects per image at this scale
                bias[:, 5:] = math.log(0.6 / (head.classes - 0.99))
    return net


# ---------------------------------------------------------------- inference (detector.backend = "torch")


class TorchNet:
    """The same darknet model run by PyTorch (the graph above), for GPUs whose OpenCV
    has no CUDA, which is every pip install. fp16 on CUDA, fp32 on CPU. Its output rows
    are exactly OpenCV's Region-layer rows, so decoding downstream is shared."""

    def __init__(self, model: DarknetModel, weights: Path) -> None:
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.half = self.device.type == "cuda"
        self.name = f"torch-{self.device.type}"
        net = build_net(model)
        load_darknet_weights(net, weights)
        net = net.to(self.device).eval()
        self.net = net.half() if self.half else net

    def forward(self, blob: np.ndarray) -> list[np.ndarray]:
        with torch.inference_mode():
            x = torch.from_numpy(blob).to(self.device)
            outputs = self.net(x.half() if self.half else x)
            rows = decode(self.net, outputs, size=(blob.shape[3], blob.shape[2]))
        return [r.float().cpu().numpy() for r in rows]
