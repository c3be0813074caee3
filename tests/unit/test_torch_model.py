"""The PyTorch twin of a darknet cfg must compute what OpenCV DNN computes.

The daemon runs the detector under `cv2.dnn.readNetFromDarknet`; the trainer
runs it in torch and exports darknet weights. If the two disagree (BatchNorm
epsilon, maxpool padding, route groups, [yolo] decoding) a network that trains
well would detect garbage in production, so every test here feeds the same
input and the same weights to both and compares the decoded detections.
"""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the torch extra is not installed")

from support.paths import ROOT, SHARED  # noqa: E402
from textwatch.detect.darknet import DarknetModel, check_weights, parse_cfg  # noqa: E402
from textwatch.errors import ModelError  # noqa: E402
from textwatch.detect.torchnet import (  # noqa: E402
    DarknetNet,
    decode,
    load_darknet_weights,
    save_darknet_weights,
)

TINY_CFG = ROOT / "backup" / "textwatch-tiny.cfg"
TOLERANCE = 1e-3


def _conv(filters: int, size: int = 3, stride: int = 1, act: str = "leaky", bn: bool = True) -> str:
    norm = "batch_normalize=1\n" if bn else ""
    return f"[convolutional]\n{norm}filters={filters}\nsize={size}\nstride={stride}\npad=1\nactivation={act}\n"


def _yolo(mask: str) -> str:
    return (
        f"[yolo]\nmask={mask}\nanchors=10,14, 23,27, 37,58, 81,82, 135,169, 344,319\n"
        "classes=80\nnum=6\nscale_x_y=1.05\nignore_thresh=.7\n"
    )


def yolov4_tiny_cfg(width: int, height: int) -> str:
    """The standard yolov4-tiny (AlexeyAB cfg/yolov4-tiny.cfg) topology, 80 classes."""
    parts = [f"[net]\nwidth={width}\nheight={height}\nchannels=3\n", _conv(32, 3, 2), _conv(64, 3, 2)]
    for w in (64, 128, 256):
        parts += [_conv(w), "[route]\nlayers=-1\ngroups=2\ngroup_id=1\n", _conv(w // 2), _conv(w // 2)]
        parts += ["[route]\nlayers=-1,-2\n", _conv(w, 1), "[route]\nlayers=-6,-1\n", "[maxpool]\nsize=2\nstride=2\n"]
    parts += [_conv(512), _conv(256, 1), _conv(512), _conv(255, 1, 1, "linear", False), _yolo("3,4,5")]
    parts += ["[route]\nlayers=-4\n", _conv(128, 1), "[upsample]\nstride=2\n", "[route]\nlayers=-1, 23\n"]
    parts += [_conv(256), _conv(255, 1, 1, "linear", False), _yolo("1,2,3")]
    return "\n".join(parts)


def resized_copy(src: Path, dst: Path, width: int, height: int) -> Path:
    """A copy of a cfg at another input size (the full YOLOv4 at 416 is slow on 2 cores)."""
    text = src.read_text(encoding="utf-8")
    text = re.sub(r"(?m)^width\s*=.*$", f"width={width}", text, count=1)
    text = re.sub(r"(?m)^height\s*=.*$", f"height={height}", text, count=1)
    dst.write_text(text, encoding="utf-8")
    return dst


def randomise(net: DarknetNet, seed: int) -> None:
    """Random weights with non-trivial BN statistics, scaled so activations stay O(1).

    Small running variances make the BatchNorm epsilon visible (1e-5 vs 1e-6 moves
    outputs by far more than the tolerance), which is the point.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for block in net.conv_blocks():
            w = block.conv.weight
            fan_in = w.shape[1] * w.shape[2] * w.shape[3]
            w.copy_(torch.randn(w.shape, generator=gen) / fan_in**0.5)
            if block.bn is not None:
                n = block.bn.num_features
                block.bn.weight.copy_(0.5 + torch.rand(n, generator=gen))
                block.bn.bias.copy_(torch.rand(n, generator=gen) - 0.5)
                block.bn.running_mean.copy_((torch.rand(n, generator=gen) - 0.5) * 0.2)
                block.bn.running_var.copy_(0.3 + torch.rand(n, generator=gen) * 0.1)
                tiny = max(1, n // 8)  # a few channels with tiny variance make the eps visible,
                block.bn.running_var[:tiny] = 2e-5  # their scale keeps the output O(1)
                block.bn.weight[:tiny] = 2e-5**0.5
            else:
                assert block.conv.bias is not None
                block.conv.bias.copy_((torch.rand(w.shape[0], generator=gen) - 0.5) * 0.5)


def calibrate_heads(net: DarknetNet, seed: int) -> None:
    """Scale each head conv so its raw output has unit spread.

    Random deep networks drift to raw values of 5-10, and exp(tw) * anchor then
    reaches 1e5, where float32 rounding alone exceeds any absolute tolerance.
    Real detectors emit O(1) raw values, so this keeps the test about layers.
    """
    model = net.model
    image = torch.from_numpy(np.random.default_rng(seed + 100).random((1, 3, model.height, model.width), dtype=np.float32))
    with torch.no_grad():
        raws = net(image)
        for raw, head in zip(raws, net.heads):
            block = net.blocks[head.layer - 1]
            spread = float(raw.std()) + float(raw.mean().abs())
            block.conv.weight /= spread
            if block.conv.bias is not None:
                block.conv.bias /= spread


def compare_with_opencv(model: DarknetModel, tmp_path: Path, seed: int = 0) -> float:
    """Max abs difference between OpenCV's [yolo] outputs and `decode` for one random input."""
    net = DarknetNet(model).eval()
    randomise(net, seed)
    calibrate_heads(net, seed)
    weights = tmp_path / "net.weights"
    save_darknet_weights(net, weights, seen=1234)
    check_weights(model, weights)
    cv_net = cv2.dnn.readNetFromDarknet(str(model.path), str(weights))
    image = np.random.default_rng(seed).random((1, 3, model.height, model.width), dtype=np.float32)
    cv_net.setInput(image)
    expected = cv_net.forward(cv_net.getUnconnectedOutLayersNames())
    with torch.no_grad():
        got = [t[0].numpy() for t in decode(net, net(torch.from_numpy(image)))]
    assert len(expected) == len(got) == len(model.heads())
    worst = 0.0
    for cv_out, torch_out in zip(expected, got):
        assert cv_out.shape == torch_out.shape
        assert np.isfinite(cv_out).all() and np.isfinite(torch_out).all(), "outputs overflowed: weights too large"
        worst = max(worst, float(np.abs(cv_out - torch_out).max()))
    print(f"{model.path.name}: max abs diff {worst:.2e}, max w {max(float(o[:, 2].max()) for o in got):.2f}")
    return worst


def test_textwatch_tiny_matches_opencv(tmp_path: Path) -> None:
    model = parse_cfg(resized_copy(TINY_CFG, tmp_path / "tiny.cfg", 256, 192))
    assert [h.stride for h in model.heads()] == [32, 16, 8]
    assert compare_with_opencv(model, tmp_path) < TOLERANCE


def test_textwatch_tiny_matches_opencv_at_416(tmp_path: Path) -> None:
    """The shipped size itself, so the exported file is known good as written."""
    assert compare_with_opencv(parse_cfg(TINY_CFG), tmp_path, seed=1) < TOLERANCE


def test_standard_yolov4_tiny_matches_opencv(tmp_path: Path) -> None:
    cfg = tmp_path / "yolov4-tiny.cfg"
    cfg.write_text(yolov4_tiny_cfg(224, 160), encoding="utf-8")
    assert compare_with_opencv(parse_cfg(cfg), tmp_path, seed=2) < TOLERANCE


def test_maxpool_stride_one_pads_like_opencv(tmp_path: Path) -> None:
    """yolov3-tiny style size=2 stride=1 maxpool pads right/bottom only, and SPP's 5/9/13."""
    cfg = tmp_path / "pool.cfg"
    cfg.write_text(
        "[net]\nwidth=96\nheight=64\nchannels=3\n\n"
        + _conv(8, 3, 2, "mish")
        + "[maxpool]\nsize=2\nstride=1\n\n[maxpool]\nsize=5\nstride=1\n\n[route]\nlayers=-1,-3\n\n"
        + "[maxpool]\nsize=3\nstride=2\n\n"
        + _conv(16, 3, 1, "relu")
        + "[shortcut]\nfrom=-2\nactivation=linear\n\n"
        + _conv(6, 1, 1, "swish")
        + "[yolo]\nmask=0\nanchors=10,14\nclasses=1\nnum=1\nthresh=0.05\n",
        encoding="utf-8",
    )
    assert compare_with_opencv(parse_cfg(cfg), tmp_path, seed=3) < TOLERANCE


@pytest.mark.slow
@pytest.mark.shared
def test_seed_full_yolov4_matches_opencv(tmp_path: Path) -> None:
    """The seed's own text.cfg (full YOLOv4: mish, shortcuts, SPP), shrunk to 160 px."""
    seed_cfg = SHARED / "seed" / "text.cfg"
    if not seed_cfg.is_file():
        pytest.skip(f"{seed_cfg} is absent: ../shared (the seed files beside the repo) is not mounted")
    model = parse_cfg(resized_copy(seed_cfg, tmp_path / "text.cfg", 160, 160))
    assert compare_with_opencv(model, tmp_path, seed=4) < TOLERANCE


def test_weights_round_trip_is_byte_identical(tmp_path: Path) -> None:
    model = parse_cfg(resized_copy(TINY_CFG, tmp_path / "tiny.cfg", 128, 128))
    first = DarknetNet(model)
    randomise(first, 5)
    a, b = tmp_path / "a.weights", tmp_path / "b.weights"
    save_darknet_weights(first, a, seen=987654321012)
    second = DarknetNet(model)
    assert load_darknet_weights(second, a) == 987654321012
    save_darknet_weights(second, b, seen=987654321012)
    assert a.read_bytes() == b.read_bytes()
    header = np.frombuffer(a.read_bytes()[:20], dtype="<i4", count=3)
    assert header.tolist() == [0, 2, 5]
    assert check_weights(model, a) == 20 + 4 * model.parameter_count()


def test_mismatched_weights_are_a_model_error(tmp_path: Path) -> None:
    model = parse_cfg(resized_copy(TINY_CFG, tmp_path / "tiny.cfg", 128, 128))
    path = tmp_path / "short.weights"
    path.write_bytes(np.array([0, 2, 5], "<i4").tobytes() + bytes(8 + 400))
    with pytest.raises(ModelError, match="truncated or for another cfg"):
        load_darknet_weights(DarknetNet(model), path)


def test_head_with_wrong_filters_is_a_model_error(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.cfg"
    cfg.write_text(yolov4_tiny_cfg(64, 64).replace("filters=255", "filters=18"), encoding="utf-8")
    with pytest.raises(ModelError, match="filters=255"):
        DarknetNet(parse_cfg(cfg))
