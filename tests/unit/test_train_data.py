"""Training data for the text-line detector: labels stay in the image, hug the ink, and group into lines."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from textwatch.errors import ConfigError
from textwatch.train.anchors import collect_box_sizes, kmeans_anchors
from textwatch.train.augment import AugmentSettings, LabelError, augment, clip_and_filter, finalize_boxes
from textwatch.train.data import MixSource, build_source, main as data_main
from textwatch.train.realdata import ICDAR, SROIE, RealSettings, group_words, load_set, shared_train_root, split_holdout
from textwatch.train.synth import Canvas, FontBank, SceneContext, discover_fonts, load_font, scene_negative

W = H = 416
SYNTH_ONLY = {"weights": {"icdar": 0, "sroie": 0}, "photo_backgrounds": False}
HEAVY = {
    "geometric_p": 1.0, "scale": [0.3, 3.0], "rotate_deg": 35.0, "perspective": 0.25, "shift": 0.5,
    "blur_p": 0.5, "motion_blur_p": 0.5, "noise_p": 0.5, "jpeg_p": 0.5, "lowres_p": 0.5, "invert_p": 0.5,
}


@pytest.fixture(scope="module")
def synth_mix() -> MixSource:
    source = build_source({**SYNTH_ONLY, "augment": HEAVY}, W, H, None)
    assert isinstance(source, MixSource)
    return source


def _check(sample, w: int = W, h: int = H) -> None:
    assert sample.image.shape == (h, w, 3) and sample.image.dtype == np.uint8
    for boxes in (sample.boxes, sample.ignore):
        assert boxes.dtype == np.float32 and boxes.ndim == 2 and boxes.shape[1] == 4
        assert np.all(boxes >= 0) and np.all(boxes <= 1)
        assert np.all(boxes[:, 2] > boxes[:, 0]) and np.all(boxes[:, 3] > boxes[:, 1])


def test_boxes_stay_inside_unit_square_under_heavy_augmentation(synth_mix: MixSource) -> None:
    """Regression for the seed's Drawback 1: after scale/rotate augmentation normalised boxes went beyond 1.

    Every synthetic kind, with zoom 0.3-3x, 35 degree rotation, strong perspective and
    half-frame shifts: every box and ignore region must stay within [0, 1].
    """
    rng = np.random.default_rng(1)
    for name in synth_mix.names:
        for _ in range(25):
            _check(synth_mix.sources[name].sample(rng))


def test_augment_clips_boxes_that_start_outside_the_image() -> None:
    """Drawback 1 at the function level: boxes crossing the border, warped hard, still finalize cleanly."""
    rng = np.random.default_rng(2)
    s = AugmentSettings.model_validate(HEAVY)
    image = np.full((H, W, 3), 200, np.uint8)
    for _ in range(200):
        xy = rng.uniform(-100, W + 100, (20, 2))
        wh = rng.uniform(1, 200, (20, 2))
        boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
        _, b, ig = augment(image, boxes, boxes[:3], rng, s)
        finalize_boxes(b, W, H)
        finalize_boxes(ig, W, H)


@pytest.mark.parametrize(
    "box",
    [[10, 10, 420, 50], [-1, 10, 50, 40], [10, 10, 50, 417], [30, 10, 30, 40], [10, 40, 50, 20], [np.nan, 0, 5, 5]],
)
def test_finalize_boxes_raises_on_out_of_range_or_degenerate(box: list[float]) -> None:
    with pytest.raises(LabelError):
        finalize_boxes(np.float32([box]), W, H)


def test_finalize_boxes_normalises_valid_boxes() -> None:
    out = finalize_boxes(np.float32([[0, 0, 416, 416], [104, 52, 208, 104]]), W, H)
    np.testing.assert_allclose(out, [[0, 0, 1, 1], [0.25, 0.125, 0.5, 0.25]])


def test_mostly_hidden_line_becomes_ignore_not_background() -> None:
    """A line 70 % outside the frame is not taught as a line, and not as background either."""
    boxes = np.float32([[100, 100, 200, 120], [-70, 10, 30, 30], [500, 10, 600, 30], [380, 300, 430, 320]])
    kept, ignore = clip_and_filter(boxes, np.float32([[5, 5, 9, 9]]), W, H, min_visible=0.4, min_px=3)
    np.testing.assert_allclose(kept, [[100, 100, 200, 120], [380, 300, 416, 320]])
    np.testing.assert_allclose(ignore, [[5, 5, 9, 9], [0, 10, 30, 30]])


def test_rendered_line_box_hugs_the_ink() -> None:
    """Labels are the tight ink box of the rendered line, not the font's ascent box."""
    rng = np.random.default_rng(3)
    font = load_font(discover_fonts()[0].path, 40)
    c = Canvas(np.zeros((120, 600, 3), np.uint8), px=1.0)
    c.write(rng, "Sample Text", font, 20, 30, color=(255, 255, 255))
    assert len(c.boxes) == 1
    ys, xs = np.nonzero(c.image[..., 0] > 64)
    assert c.boxes[0] == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)


def test_wide_gap_in_a_rendered_line_starts_a_new_box() -> None:
    rng = np.random.default_rng(4)
    font = load_font(discover_fonts()[0].path, 20)
    c = Canvas(np.zeros((60, 800, 3), np.uint8), px=1.0)
    c.write(rng, "Total" + " " * 30 + "12.50", font, 10, 10, color=(255, 255, 255))
    c.write(rng, "two words", font, 10, 35, color=(255, 255, 255))
    assert len(c.boxes) == 3


def test_negative_scene_has_no_boxes() -> None:
    ctx = SceneContext(FontBank(discover_fonts()), None, W, H)
    rng = np.random.default_rng(5)
    for _ in range(10):
        c = scene_negative(rng, ctx)
        assert c.boxes == [] and c.ignore == []


def test_fonts_span_families() -> None:
    fonts = discover_fonts()
    tags = set().union(*(f.tags for f in fonts))
    assert {"serif", "sans", "mono", "bold", "condensed"} <= tags
    assert len({f.family for f in fonts}) >= 5


def test_small_text_is_sampled() -> None:
    """Drawback 2 was small text: the mix must contain lines under 12 px high at 416."""
    rng = np.random.default_rng(6)
    source = build_source(SYNTH_ONLY, W, H, None)
    wh = collect_box_sizes(source, rng, 60, W, H)
    assert (wh[:, 1] < 12).sum() >= 20
    assert (wh[:, 1] > 40).sum() >= 1


def test_group_words_into_lines() -> None:
    """Two lines; the first has a wide gap, so it is two boxes; a ### between words is never swallowed."""
    s = RealSettings()
    words = np.float32([
        [10, 10, 50, 30], [56, 11, 100, 31], [160, 10, 190, 30],  # line 1: gap 60 > 1.0 x 20 px splits it
        [10, 40, 60, 60], [66, 41, 120, 61],  # line 2: one box
        [10, 100, 40, 120], [62, 100, 90, 120],  # line 3: close words with a ### between them
    ])
    ignore = np.float32([[43, 100, 59, 120]])
    lines = group_words(words, ignore, s)
    expected = [[10, 10, 100, 31], [160, 10, 190, 30], [10, 40, 120, 61], [10, 100, 40, 120], [62, 100, 90, 120]]
    assert sorted(lines.tolist()) == sorted(expected)


def test_group_words_keeps_different_heights_apart() -> None:
    s = RealSettings()
    lines = group_words(np.float32([[10, 10, 50, 30], [55, 0, 150, 60]]), np.zeros((0, 4), np.float32), s)
    assert len(lines) == 2


def test_kmeans_recovers_clusters() -> None:
    rng = np.random.default_rng(7)
    centres = np.float32([[12, 6], [60, 14], [220, 32]])
    wh = np.concatenate([c * rng.uniform(0.93, 1.07, (300, 2)) for c in centres])
    anchors = kmeans_anchors(wh, 3, seed=0)
    np.testing.assert_allclose(anchors, centres, rtol=0.06)


def test_recipe_rejects_unknown_and_out_of_range_keys() -> None:
    with pytest.raises(ConfigError, match="nonsense"):
        build_source({"nonsense": 1}, W, H, None)
    with pytest.raises(ConfigError, match="rotate_deg"):
        build_source({"augment": {"rotate_deg": -1}}, W, H, None)
    with pytest.raises(ConfigError):
        build_source({"weights": {"sign": 0, "document": 0, "receipt": 0, "screen": 0, "overlay": 0, "negative": 0}}, W, H, None)


def test_preview_cli_writes_png(tmp_path: Path) -> None:
    out = tmp_path / "p.png"
    assert data_main(["--preview", str(out), "--n", "2", "--config", str(tmp_path / "absent.toml")]) == 0
    assert out.stat().st_size > 1000


ROOT = shared_train_root()
needs_shared = pytest.mark.skipif(ROOT is None, reason="../shared/train (ICDAR 2015 + SROIE) is not beside the repository")


@pytest.mark.shared
@needs_shared
def test_real_sets_load_and_sample() -> None:
    assert ROOT is not None
    s = RealSettings()
    icdar = load_set(ROOT, ICDAR, s)
    sroie = load_set(ROOT, SROIE, s)
    assert len(icdar) == 1000 and len(sroie) == 158
    lines = sum(len(r.lines) for r in icdar)
    assert 1000 < lines < 4468  # 4468 legible words grouped into fewer lines
    # every ### is an ignore region (plus one legible "..." word, a rule-only text)
    assert sum(len(r.ignore) for r in icdar) == 7418 + 1
    source = build_source({}, W, H, ROOT)
    assert isinstance(source, MixSource) and {"icdar", "sroie"} <= set(source.sources)
    rng = np.random.default_rng(8)
    for name in ("icdar", "sroie"):
        samples = [source.sources[name].sample(rng) for _ in range(15)]
        for smp in samples:
            _check(smp)
        assert sum(len(smp.boxes) for smp in samples) > 15



def test_split_holdout_keeps_every_nth_image_out_of_training() -> None:
    images = list(range(25))
    kept, held = split_holdout(images, 10)  # type: ignore[arg-type]
    assert held == [9, 19] and sorted(kept + held) == images and not set(kept) & set(held)
    assert split_holdout(images, 0) == (images, [])  # type: ignore[arg-type]
    assert split_holdout(images, 10) == (kept, held)  # a fixed rule: every run and resume agree
