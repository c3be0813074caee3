"""The training recipe (config/train.toml): one strict schema, one loader.

The trainer reads [model], [train], [loss] and [val]; [data] is validated by
`textwatch.train.data.parse_recipe` (the data side defines its keys) and
handed to `data.build_source`, minus `cache_samples`, which is the trainer's.
"""

from __future__ import annotations

import argparse
import logging
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from textwatch.errors import ConfigError

class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSection(_Strict):
    cfg: Path = Field(Path("backup/textwatch-tiny.cfg"), description="darknet cfg to train (its anchors are used)")
    init_weights: Path | None = Field(None, description="optional darknet .weights to start from")


class TrainSection(_Strict):
    seed: int = Field(0, description="seeds torch, numpy and every data worker")
    steps: int = Field(20000, ge=1, description="optimizer steps in the whole run")
    batch_size: int = Field(16, ge=1, le=1024)
    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float = Field(2e-3, gt=0, le=1.0, description="peak learning rate after warmup")
    momentum: float = Field(0.937, ge=0, lt=1, description="SGD momentum / AdamW beta1")
    weight_decay: float = Field(5e-4, ge=0, le=1, description="on conv weights only, not BN or biases")
    warmup_steps: int = Field(300, ge=0, description="linear ramp from 0 to lr")
    final_lr_ratio: float = Field(0.05, ge=0, le=1, description="cosine ends at lr * this")
    grad_clip: float = Field(10.0, gt=0, description="max gradient norm")
    sizes: list[int] = Field([416], min_length=1, description="multi-scale: square net sizes, multiples of 32")
    scale_every: int = Field(10, ge=1, description="steps between draws of a new net size")
    ema_decay: float = Field(0.9995, ge=0, lt=1, description="EMA of weights, ramped in over ~2000 steps")
    amp: bool = Field(True, description="bf16 autocast on CUDA and on CPUs with amx_bf16/avx512_bf16; ignored elsewhere")
    workers: int = Field(1, ge=0, le=64, description="DataLoader worker processes (0: in-process)")
    checkpoint_every: int = Field(500, ge=1)
    log_every: int = Field(10, ge=1)

    @field_validator("sizes")
    @classmethod
    def _multiple_of_32(cls, sizes: list[int]) -> list[int]:
        bad = [s for s in sizes if s % 32 or s < 64]
        if bad:
            raise ValueError(f"net sizes must be multiples of 32 and >= 64, got {bad}")
        return sizes


class LossSection(_Strict):
    box: float = Field(0.05, ge=0, description="weight of 1 - CIoU")
    obj: float = Field(1.0, ge=0, description="weight of objectness BCE")
    cls: float = Field(0.5, ge=0, description="weight of class BCE")
    iou_thresh: float = Field(0.213, ge=0, le=1, description="extra anchors above this shape IoU get the target")
    ignore_thresh: float = Field(0.7, ge=0, le=1, description="predictions above this IoU are not background")


class ValSection(_Strict):
    every: int = Field(500, ge=1, description="steps between validation passes")
    samples: int = Field(64, ge=1, description="size of the fixed held-out synthetic set")
    seed: int = Field(987654, description="seed of the held-out set; differs from training seeds")
    conf_thresh: float = Field(0.25, gt=0, lt=1, description="score (objectness * class) to keep a box")
    nms_thresh: float = Field(0.45, gt=0, le=1)
    match_iou: float = Field(0.5, gt=0, le=1, description="IoU for a detection to count as a hit")
    real_samples: int = Field(
        0, ge=0, le=10000,
        description="fixed crops of the held-out real images ([data.real] holdout_every) for the real validation; 0 = none",
    )


class Recipe(_Strict):
    model: ModelSection = ModelSection()
    train: TrainSection = TrainSection()
    loss: LossSection = LossSection()
    val: ValSection = ValSection()
    data: dict[str, Any] = Field(default_factory=dict, description="passed to data.build_source (cache_samples: ours)")

    @property
    def cache_samples(self) -> int:
        """`data.cache_samples`: the trainer's only key in [data]; build_source never sees it."""
        value = self.data.get("cache_samples", 0)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ConfigError(f"[data] cache_samples must be a non-negative integer, got {value!r}")
        return value

    @property
    def source_recipe(self) -> dict[str, Any]:
        return {k: v for k, v in self.data.items() if k != "cache_samples"}


def load_recipe(path: Path) -> Recipe:
    """Parse and validate the TOML recipe; every problem is one ConfigError line."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"recipe not found: {path}") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise ConfigError(f"recipe {path} is not valid TOML: {err}") from None
    try:
        recipe = Recipe.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"recipe {path}: {where}: {first['msg']} ({err.error_count()} error(s))") from None
    _ = recipe.cache_samples  # validate early
    return recipe


def data_table(path: Path) -> dict[str, Any]:
    """The [data] table for build_source from the recipe at `path`; the defaults where there is no
    file, so the preview and anchor tools run from any folder (with a warning, never silently)."""
    if not path.is_file():
        logging.getLogger(__name__).warning("%s not found: using the default [data] recipe", path)
        return {}
    return load_recipe(path).source_recipe


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `textwatch train`; here, not in the trainer, so that building the CLI never imports torch."""
    parser.add_argument("--recipe", type=Path, default=Path("config/train.toml"), help="TOML training recipe")
    parser.add_argument("--out", type=Path, required=True, help="run directory, e.g. runs/NAME")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--steps", type=int, default=None, help="override train.steps")
    parser.add_argument("--workers", type=int, default=None, help="override train.workers")
