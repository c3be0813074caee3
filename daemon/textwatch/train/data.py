"""Training samples for the text-line detector: one mix of synthetic scenes and real images.

Every sample, whatever its origin, goes through the same three steps so the
trainer sees the geometry the runtime produces:

1. a source image in its own pixels (a rendered scene or a crop of a real image)
   with line boxes and ignore boxes; boxes cut by the crop or canvas border are
   clipped, and mostly-hidden ones become ignore regions;
2. `textwatch.detect.geometry.letterbox` to the network size (one scale factor,
   centred, grey 114), exactly as at inference;
3. camera-like augmentation (`augment.augment`) and `augment.finalize_boxes`,
   which raises if any coordinate is outside [0, 1] (the seed's Drawback 1).

`build_source` reads the `[data]` table of config/train.toml. Preview the labels:

    python -m textwatch.train.data --preview OUT.png --n 16
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from textwatch.detect.geometry import letterbox
from textwatch.errors import ConfigError, InputMissing
from textwatch.train.recipe import data_table
from textwatch.train.augment import AugmentSettings, augment, clip_and_filter, finalize_boxes
from textwatch.train.realdata import (
    ICDAR,
    SROIE,
    RealCrops,
    RealSettings,
    TextFreeCrops,
    load_set,
    shared_train_root,
    split_holdout,
)
from textwatch.train.synth import SCENES, FontBank, SceneContext, discover_fonts

log = logging.getLogger(__name__)

REAL_KINDS = {"icdar": ICDAR, "sroie": SROIE}


@dataclass
class Sample:
    """One training sample at the network input size."""

    image: np.ndarray  # HxWx3 uint8 BGR, exactly height x width of the network input
    boxes: np.ndarray  # Nx4 float32, xyxy normalised to [0,1], text LINES
    ignore: np.ndarray  # Mx4 float32, xyxy normalised, do-not-care regions (not to be taught as background)


class SampleSource(Protocol):
    """Anything that can draw a random training sample."""

    def sample(self, rng: np.random.Generator) -> Sample: ...


class MixWeights(BaseModel):
    """Relative weight of each sample kind ([data.weights]); normalised, 0 switches a kind off."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sign: float = Field(0.16, ge=0, description="signs, plates and labels on photos")
    document: float = Field(0.12, ge=0, description="document pages: headings and left-aligned paragraphs")
    receipt: float = Field(0.08, ge=0, description="till receipts: item/price rows")
    screen: float = Field(0.18, ge=0, description="application windows: title bar, menus, ribbon labels, status bar")
    overlay: float = Field(0.1, ge=0, description="video overlays: subtitles, tickers, timestamps, logos")
    negative: float = Field(0.06, ge=0, description="hard negatives with no text at all")
    icdar: float = Field(0.22, ge=0, description="ICDAR 2015 scene images (real)")
    sroie: float = Field(0.08, ge=0, description="SROIE receipts (real)")


class DataRecipe(BaseModel):
    """The [data] table of config/train.toml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_font_px: float = Field(8.0, ge=4, le=64, description="smallest synthetic font size, network pixels")
    max_font_frac: float = Field(0.3333, gt=0, le=1, description="largest synthetic font size, fraction of the network side")
    photo_backgrounds: bool = Field(True, description="use text-free ICDAR regions as synthetic backgrounds")
    weights: MixWeights = Field(default_factory=MixWeights)
    augment: AugmentSettings = Field(default_factory=AugmentSettings)
    real: RealSettings = Field(default_factory=RealSettings)

    @model_validator(mode="after")
    def _some_weight(self) -> DataRecipe:
        """At least one kind must be drawn."""
        if sum(self.weights.model_dump().values()) <= 0:
            raise ValueError("data.weights are all zero: no sample kind left to draw")
        return self


def parse_recipe(recipe: dict) -> DataRecipe:
    """Validate the [data] table; a bad key or value is a ConfigError naming it."""
    try:
        return DataRecipe.model_validate(recipe)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"[data] {where}: {first['msg']} ({err.error_count()} error(s))") from err


def to_sample(
    image: np.ndarray, boxes: np.ndarray, ignore: np.ndarray, width: int, height: int,
    rng: np.random.Generator, aug: AugmentSettings,
) -> Sample:
    """Clip to the source image, letterbox to the network size, augment, finalize (the steps in the module docstring)."""
    h, w = image.shape[:2]
    boxes, ignore = clip_and_filter(boxes, ignore, w, h, aug.min_visible, 1.0)
    net, lb = letterbox(image, width, height)
    net, boxes, ignore = augment(net, lb.to_net(boxes), lb.to_net(ignore), rng, aug)
    return Sample(net, finalize_boxes(boxes, width, height), finalize_boxes(ignore, width, height))


class SceneSource:
    """Samples of one synthetic scene kind."""

    def __init__(self, kind: str, ctx: SceneContext, aug: AugmentSettings) -> None:
        self.scene, self.ctx, self.aug = SCENES[kind], ctx, aug

    def sample(self, rng: np.random.Generator) -> Sample:
        """Render a scene and turn it into a network-sized sample."""
        c = self.scene(rng, self.ctx)
        return to_sample(c.image, np.float32(c.boxes).reshape(-1, 4), np.float32(c.ignore).reshape(-1, 4),
                         self.ctx.width, self.ctx.height, rng, self.aug)


class RealSource:
    """Samples of one real set: random crop, letterbox, augment."""

    def __init__(self, crops: RealCrops, width: int, height: int, aug: AugmentSettings) -> None:
        self.crops, self.width, self.height, self.aug = crops, width, height, aug

    def sample(self, rng: np.random.Generator) -> Sample:
        """A random crop of a random image of the set as a network-sized sample."""
        pixels, boxes, ignore = self.crops.crop(rng, self.width, self.height)
        return to_sample(pixels, boxes, ignore, self.width, self.height, rng, self.aug)


class MixSource:
    """Draws each sample from one of several sources, chosen by weight."""

    def __init__(self, sources: dict[str, SampleSource], weights: dict[str, float]) -> None:
        self.sources = sources
        self.names = list(sources)
        p = np.array([weights[n] for n in self.names], np.float64)
        self.p = p / p.sum()

    def pick(self, rng: np.random.Generator) -> str:
        """The name of a source drawn by weight."""
        return self.names[int(rng.choice(len(self.names), p=self.p))]

    def sample(self, rng: np.random.Generator) -> Sample:
        """A sample from a source drawn by weight."""
        return self.sources[self.pick(rng)].sample(rng)


def _real_sets(root: Path | None, recipe: DataRecipe) -> dict[str, list]:
    """Load the real sets that have a weight (or serve as photo backgrounds), without their held-out images."""
    wanted = {k for k, v in REAL_KINDS.items() if getattr(recipe.weights, k) > 0}
    if recipe.photo_backgrounds:
        wanted.add("icdar")
    if root is None:
        return {}
    if not root.is_dir():
        raise InputMissing(f"training data root {root} does not exist")
    every = recipe.real.holdout_every
    return {k: split_holdout(load_set(root, REAL_KINDS[k], recipe.real), every)[0] for k in sorted(wanted)}


def build_source(recipe: dict, width: int, height: int, root: Path | None) -> SampleSource:
    """The weighted mix of synthetic scenes and real sets described by the [data] table."""
    r = parse_recipe(recipe)
    weights = r.weights.model_dump()
    if root is None:
        real_w = sum(weights[k] for k in REAL_KINDS)
        if real_w > 0:
            log.warning("no shared/train folder: real sets (weight %.2f) dropped, synthetic data only", real_w)
        for k in REAL_KINDS:
            weights[k] = 0.0
        if sum(weights.values()) <= 0:
            raise ConfigError("[data] weights: only real sets have weight, and shared/train is absent")
    real = _real_sets(root, r)
    photo = TextFreeCrops(real["icdar"], r.real.pool_size, r.real.pool_refresh) if "icdar" in real and r.photo_backgrounds else None
    ctx = SceneContext(FontBank(discover_fonts()), photo, width, height, r.min_font_px, r.max_font_frac)
    sources: dict[str, SampleSource] = {}
    for kind, w in weights.items():
        if w <= 0:
            continue
        if kind in REAL_KINDS:
            sources[kind] = RealSource(RealCrops(real[kind], r.real), width, height, r.augment)
        else:
            sources[kind] = SceneSource(kind, ctx, r.augment)
    return MixSource(sources, weights)


def held_out_source(recipe: dict, width: int, height: int, root: Path | None) -> SampleSource | None:
    """Crops of the real images kept out of training ([data.real] holdout_every), without augmentation.

    The real validation: synthetic validation did not predict the real eval
    sets (backup/README.md), so checkpoints are also judged on real images the
    run never saw. Each weighted real set counts equally, so receipts weigh as
    much as scenes. None when nothing is held out or shared/train is absent.
    """
    r = parse_recipe(recipe)
    if root is None or r.real.holdout_every <= 0:
        return None
    plain = r.augment.model_copy(update={k: 0.0 for k in AugmentSettings.model_fields if k.endswith("_p")})
    sources: dict[str, SampleSource] = {}
    for kind, name in REAL_KINDS.items():
        if getattr(r.weights, kind) > 0:
            held = split_holdout(load_set(root, name, r.real), r.real.holdout_every)[1]
            if held:
                sources[kind] = RealSource(RealCrops(held, r.real), width, height, plain)
    return MixSource(sources, {kind: 1.0 for kind in sources}) if sources else None


# ---------------------------------------------------------------- preview


def draw_sample(s: Sample) -> np.ndarray:
    """The sample image with line boxes in green and ignore regions in red."""
    img = s.image.copy()
    h, w = img.shape[:2]
    scale = np.float32([w, h, w, h])
    for boxes, color in ((s.ignore, (0, 0, 255)), (s.boxes, (0, 255, 0))):
        for x0, y0, x1, y1 in (boxes * scale).round().astype(int):
            cv2.rectangle(img, (int(x0), int(y0)), (int(x1) - 1, int(y1) - 1), color, 1)
    return img


def preview(source: SampleSource, n: int, rng: np.random.Generator, cols: int = 4) -> np.ndarray:
    """A grid of `n` drawn samples, for a human to check the labels."""
    tiles = [draw_sample(source.sample(rng)) for _ in range(n)]
    h, w = tiles[0].shape[:2]
    rows = -(-n // cols)
    grid = np.full((rows * (h + 4), cols * (w + 4), 3), 255, np.uint8)
    for i, t in enumerate(tiles):
        y, x = (i // cols) * (h + 4), (i % cols) * (w + 4)
        grid[y : y + h, x : x + w] = t
    return grid


def main(argv: list[str] | None = None) -> int:
    """`python -m textwatch.train.data --preview OUT.png --n 16`: draw labelled samples."""
    ap = argparse.ArgumentParser(prog="python -m textwatch.train.data", description=__doc__.splitlines()[0])
    ap.add_argument("--preview", type=Path, required=True, help="PNG file to write")
    ap.add_argument("--n", type=int, default=16, help="number of samples")
    ap.add_argument("--config", type=Path, default=Path("config/train.toml"), help="train.toml with a [data] table")
    ap.add_argument("--size", type=int, nargs=2, default=(416, 416), metavar=("W", "H"), help="network input size")
    ap.add_argument("--kind", default=None, help="only this kind (sign, document, receipt, screen, overlay, negative, icdar, sroie)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    recipe = data_table(args.config)
    root = shared_train_root()
    if root is None:
        log.warning("../shared/train not found beside the repository: synthetic samples only")
    source = build_source(recipe, args.size[0], args.size[1], root)
    if args.kind:
        if not isinstance(source, MixSource) or args.kind not in source.sources:
            print(f"kind {args.kind!r} is not in this mix", file=sys.stderr)
            return 2
        source = source.sources[args.kind]
    if not cv2.imwrite(str(args.preview), preview(source, args.n, np.random.default_rng(args.seed))):
        print(f"cannot write {args.preview}", file=sys.stderr)
        return 1
    print(f"wrote {args.preview}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
