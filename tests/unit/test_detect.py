"""The OpenCV detector runtime: model checks, backend choice, decoding and box merging."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from support import models
from support.models import write_random_weights
from support.paths import shared_path
from textwatch.config import DetectorSettings
from textwatch.detect.darknet import check_weights, parse_cfg
from textwatch.detect.geometry import fitted_tile, tiles, tiles_per_axis
from textwatch.detect.merge import merge_line_fragments, reading_order
from textwatch.detect.runtime import Detector, choose_backend, cuda_device_count
from textwatch.errors import BackendUnavailable, ModelError

def constant_model(folder: Path, objectness_logit: float) -> DetectorSettings:
    """A 2x2 grid (32x32 max-pool) where every cell predicts the same 40x20 box."""
    cfg, weights = models.constant_model(folder, "constant", 32, (40, 20), objectness_logit, 10.0)
    return DetectorSettings(cfg=cfg, weights=weights, backend="cpu", padding=0.0, tiling="off", confidence=0.5)


def test_decoding_maps_boxes_back_through_the_letterbox(tmp_path) -> None:
    """Hand-computed boxes: 128x64 frame -> letterbox scale 0.5, dy 16 -> net 64x64, 2x2 grid."""
    detector = Detector(constant_model(tmp_path, objectness_logit=3.0))
    frame = np.zeros((64, 128, 3), np.uint8)
    found = detector.detect(frame)
    # Net-space boxes are 40x20 centred on (16|48, 16|48); the two in a row overlap
    # horizontally and merge into one line. Row y=16: 6..26 net -> (6-16)/0.5 = -20 -> clipped 0,
    # (26-16)/0.5 = 20. Row y=48: 38..58 -> 44..84 -> clipped 64. x: -4..68 net -> -8..136 -> 0..128.
    boxes = sorted(d.box for d in found)
    assert boxes == [(0, 0, 128, 20), (0, 44, 128, 64)]
    confidence = 1 / (1 + np.exp(-3.0)) * 1 / (1 + np.exp(-10.0))
    assert all(abs(d.confidence - confidence) < 1e-3 for d in found)


def test_confidence_threshold_drops_weak_boxes(tmp_path) -> None:
    detector = Detector(constant_model(tmp_path, objectness_logit=-3.0))
    assert detector.detect(np.zeros((64, 64, 3), np.uint8)) == []


def test_batch_equals_single(tiny_model) -> None:
    cfg, weights = tiny_model
    detector = Detector(DetectorSettings(cfg=cfg, weights=weights, backend="cpu", confidence=0.05, tiling="off"))
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 255, (300, 500, 3), dtype=np.uint8) for _ in range(3)]
    batched = detector.detect_batch(frames)
    assert batched == [detector.detect(f) for f in frames]


def test_tiling_adds_views_for_large_frames(tiny_model) -> None:
    cfg, weights = tiny_model
    detector = Detector(DetectorSettings(cfg=cfg, weights=weights, backend="cpu", tile_size=640, tile_fit=False))
    views, _ = detector._views([np.zeros((720, 1280, 3), np.uint8), np.zeros((480, 640, 3), np.uint8)])
    regions = [v.region for v in views if v.frame == 0]
    assert regions[0] == (0, 0, 1280, 720) and len(regions) > 1
    assert all(x2 - x1 == 640 and y2 - y1 == 640 for x1, y1, x2, y2 in regions[1:])
    assert [v.region for v in views if v.frame == 1] == [(0, 0, 640, 480)]


@pytest.mark.parametrize(
    ("width", "height", "edge"),
    [(1280, 720, 493), (754, 1000, 556), (461, 933, 519), (1920, 1080, 600), (600, 1200, 600)],
)
def test_fitted_tiles_are_as_many_as_tile_size_gives_and_as_small_as_they_can_be(width, height, edge) -> None:
    """tile_fit: the same number of tiles (forwards) as tile_size 640, each only as large as that count needs
    to cover the frame with the overlap, so text reaches the network larger; an axis one tile spans
    keeps its whole length (461 px wide receipt, 600 px wide page)."""
    fitted = fitted_tile(width, height, 640, 0.2, smallest=416)
    assert fitted == edge
    assert tiles_per_axis(width, height, fitted, 0.2) == tiles_per_axis(width, height, 640, 0.2)
    assert tiles_per_axis(width, height, fitted - 1, 0.2) != tiles_per_axis(width, height, 640, 0.2) or fitted == 416
    parts = tiles(width, height, fitted, 0.2)
    assert min(x1 for x1, _, _, _ in parts) == 0 and max(x2 for _, _, x2, _ in parts) == width
    assert min(y1 for _, y1, _, _ in parts) == 0 and max(y2 for _, _, _, y2 in parts) == height


def test_fitted_tiles_never_go_below_the_network_input() -> None:
    """A tile smaller than the network input would only be enlarged into it: `smallest` (the detector passes
    its input size) bounds the fitting; 3 x 2 tiles of 493 would cover 1280x720, but not below 560 here."""
    assert fitted_tile(1280, 720, 640, 0.2, smallest=560) == 560
    assert tiles_per_axis(1280, 720, 560, 0.2) == (3, 2)


def test_weights_size_mismatch_names_both_sizes(tiny_model, tmp_path) -> None:
    cfg, _ = tiny_model
    short = tmp_path / "short.weights"
    write_random_weights(cfg, short, truncate=100)
    expected = 20 + 4 * parse_cfg(cfg).parameter_count()
    with pytest.raises(ModelError, match=f"is {expected - 100} bytes but tiny.cfg needs {expected}"):
        check_weights(parse_cfg(cfg), short)


def test_not_a_darknet_cfg(tmp_path) -> None:
    bogus = tmp_path / "model.cfg"
    bogus.write_text("<html>not a model</html>\n")
    with pytest.raises(ModelError, match="not a darknet cfg"):
        parse_cfg(bogus)
    bogus.write_text("[net]\nwidth=32\n[resnet]\nx=1\n")
    with pytest.raises(ModelError, match="unsupported section type"):
        parse_cfg(bogus)
    bogus.write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(ModelError, match="not readable text"):
        parse_cfg(bogus)


def test_seed_full_yolov4_cfg_parses_and_loads(tmp_path) -> None:
    """The seed's own cfg: three heads at strides 8/16/32, loadable with matching weights."""
    seed_cfg = shared_path("seed", "text.cfg")
    cfg = tmp_path / "text.cfg"
    shutil.copy(seed_cfg, cfg)
    model = parse_cfg(cfg)
    assert [h.stride for h in model.heads()] == [8, 16, 32]
    assert [h.scale_x_y for h in model.heads()] == [1.2, 1.1, 1.05]
    weights = tmp_path / "text.weights"
    write_random_weights(cfg, weights)
    assert check_weights(model, weights) == weights.stat().st_size
    cv2.dnn.readNetFromDarknet(str(cfg), str(weights))  # OpenCV agrees on the size


@pytest.mark.skipif(cuda_device_count() > 0, reason="this OpenCV has CUDA; the error path cannot be reached")
@pytest.mark.parametrize("backend", ["cuda", "cuda-fp16"])
def test_cuda_request_without_cuda_fails_at_start(backend: str) -> None:
    with pytest.raises(BackendUnavailable, match="has no CUDA device.*OPENCV_DNN_CUDA"):
        choose_backend(backend)


def test_auto_backend_picks_what_exists() -> None:
    from textwatch.detect.runtime import torch_device

    expected = "cuda-fp16" if cuda_device_count() else ("torch" if torch_device() == "cuda" else "cpu")
    assert choose_backend("auto") == expected


def test_overlapping_fragments_of_one_line_merge() -> None:
    """Pins the seed's Drawback 2: overlapping boxes on small text stay separate after NMS."""
    fragments = np.array(
        [
            [100, 50, 160, 62, 0.9],  # left half of a small line
            [150, 51, 230, 62, 0.8],  # right half, overlapping it
            [102, 52, 140, 61, 0.4],  # a piece inside the first
            [100, 80, 230, 92, 0.7],  # the next line: must stay separate
        ],
        dtype=np.float32,
    )
    merged = merge_line_fragments(fragments)
    assert sorted(tuple(map(int, row[:4])) for row in merged) == [(100, 50, 230, 62), (100, 80, 230, 92)]


def test_reading_order_is_lines_then_left_to_right() -> None:
    boxes = [(300, 12, 400, 30), (10, 10, 100, 30), (10, 50, 100, 70), (120, 8, 200, 28)]
    assert reading_order(boxes) == [1, 3, 0, 2]


def test_torch_backend_gives_opencvs_boxes(tiny_model) -> None:
    """detector.backend = "torch" runs the same darknet model; boxes equal OpenCV's on CPU."""
    pytest.importorskip("torch", reason="torch is the optional extra; make test installs it")
    cfg, weights = tiny_model
    settings = dict(cfg=cfg, weights=weights, confidence=0.05, tile_size=320)
    opencv = Detector(DetectorSettings(backend="cpu", **settings))
    torch_backend = Detector(DetectorSettings(backend="torch", **settings))
    rng = np.random.default_rng(3)
    frames = [rng.integers(0, 255, (480, 720, 3), dtype=np.uint8) for _ in range(2)]
    _, inputs = opencv._views(frames)
    raw_cv, raw_torch = opencv._forward(inputs), torch_backend._forward(inputs)
    assert max(float(np.abs(a - b).max()) for a, b in zip(raw_cv, raw_torch)) < 1e-3


def test_torch_backend_finds_the_same_text_lines() -> None:
    """Same boxes from both backends with the shipped model on a rendered window (random
    weights give hundreds of near-tied boxes, whose merging is not a backend property)."""
    pytest.importorskip("torch", reason="torch is the optional extra; make test installs it")
    from support.models import SHIPPED_CFG, SHIPPED_WEIGHTS, needs_shipped_model
    from textwatch.tools.samples import document_window

    needs_shipped_model()
    frame = document_window()[0]
    found = [
        Detector(DetectorSettings(cfg=SHIPPED_CFG, weights=SHIPPED_WEIGHTS, backend=backend)).detect(frame)
        for backend in ("cpu", "torch")
    ]
    assert [d.box for d in found[0]] == [d.box for d in found[1]]
    assert np.allclose([d.confidence for d in found[0]], [d.confidence for d in found[1]], atol=1e-3)


@pytest.mark.cuda
def test_torch_backend_on_cuda_matches_cpu_within_fp16(tiny_model) -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device visible to torch")
    cfg, weights = tiny_model
    cpu = Detector(DetectorSettings(cfg=cfg, weights=weights, backend="cpu", confidence=0.05))
    gpu = Detector(DetectorSettings(cfg=cfg, weights=weights, backend="torch", confidence=0.05))
    assert gpu.torch_net is not None and gpu.torch_net.half
    rng = np.random.default_rng(4)
    _, inputs = cpu._views([rng.integers(0, 255, (416, 416, 3), dtype=np.uint8)])
    assert max(float(np.abs(a - b).max()) for a, b in zip(cpu._forward(inputs), gpu._forward(inputs))) < 2e-2


def test_overlapping_guesses_of_different_height_merge() -> None:
    """Regression: a title read twice, as a full box and a taller box over its end, came
    out as two lines ("Report2 - textwatch Write" and "stch Writer") because their heights
    differed by more than the same-line ratio."""
    boxes = np.array([[484, 4, 718, 40, 0.8], [636, 2, 737, 33, 0.6]], dtype=np.float32)
    assert [tuple(map(int, r[:4])) for r in merge_line_fragments(boxes)] == [(484, 2, 737, 40)]
    touching = np.array([[0, 10, 50, 20, 0.9], [50, 0, 90, 30, 0.9]], dtype=np.float32)
    assert len(merge_line_fragments(touching)) == 2  # a small label beside big text stays apart


def test_a_whole_line_guess_holding_its_tile_pieces_is_kept() -> None:
    """Regression (issue 15): the whole frame's box over the seed's large "Align Text" (0.9) held
    the two pieces its fitted tiles cut, side by side on one row; counted as two lines, it was
    dropped as a paragraph guess, and the pieces were read as "Align" and "TexT"."""
    boxes = np.array(
        [[305, 170, 917, 287, 0.9], [335, 227, 596, 278, 0.35], [669, 228, 857, 268, 0.2]], dtype=np.float32
    )
    assert [tuple(map(int, r[:4])) for r in merge_line_fragments(boxes)] == [(305, 170, 917, 287)]
    two_rows = np.array(
        [[100, 100, 400, 160, 0.9], [110, 105, 390, 125, 0.5], [110, 135, 390, 155, 0.5]], dtype=np.float32
    )
    assert sorted(tuple(map(int, r[:4])) for r in merge_line_fragments(two_rows)) == [
        (110, 105, 390, 125),
        (110, 135, 390, 155),
    ]  # a box over two rows is still a paragraph guess


def test_a_huge_frame_gets_bounded_tiles_and_bounded_passes(tmp_path: Path) -> None:
    """Regression (issue 22): a 10000x10000 image put every 640 px tile (400) into one
    forward (88 s, 6.9 GB). Now at most MAX_TILES tiles, and at most MAX_FORWARD views a pass."""
    from textwatch.detect import runtime

    detector = Detector(constant_model(tmp_path, objectness_logit=-3.0).model_copy(update={"tiling": "auto"}))
    frame = np.zeros((10000, 10000, 3), np.uint8)
    regions = detector._regions(frame)
    assert 1 < len(regions) <= 1 + runtime.MAX_TILES
    covered = np.zeros((100, 100), bool)  # every part of the frame is in some tile (1/100 resolution)
    for x1, y1, x2, y2 in regions[1:]:
        covered[y1 // 100 : -(-y2 // 100), x1 // 100 : -(-x2 // 100)] = True
    assert covered.all()
    passes = []
    detector.net.forward = lambda blob, real=detector.net.forward: passes.append(len(blob)) or real(blob)
    detector._forward([np.zeros((detector.input_size[1], detector.input_size[0], 3), np.uint8)] * 40)
    assert max(passes) <= runtime.MAX_FORWARD and sum(passes) == 40
