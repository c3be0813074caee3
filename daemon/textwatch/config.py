"""The one typed settings schema, loaded from TOML.

Every field has a default, bounds where they make sense and a one-line
description; unknown keys are rejected with their dotted path. The commented
default file config/textwatch.toml mirrors this schema (a test keeps them in
step). Relative paths in a config file are resolved against that file's folder,
so a config can live next to its model. The built-in defaults are exactly the
values of config/textwatch.toml and resolve against config/ too, which is why
the model paths start with "../backup/". `render_default_config()` writes that
file from this schema, and a test keeps the two identical.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from textwatch.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = PROJECT_ROOT / "config" / "textwatch.toml"

Backend = Literal["auto", "cpu", "opencl", "cuda", "cuda-fp16", "torch"]


class Strict(BaseModel):
    """Base for every section: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DetectorSettings(Strict):
    cfg: Path = Field(Path("../backup/textwatch-tiny.cfg"), description="darknet cfg of the text detector")
    weights: Path = Field(
        Path("../backup/textwatch-tiny.weights"), description="darknet weights matching cfg exactly"
    )
    backend: Backend = Field(
        "auto", description="auto | cpu | opencl | cuda | cuda-fp16 | torch; auto picks the fastest present"
    )
    confidence: float = Field(0.3, ge=0.0, le=1.0, description="minimum detector confidence of a box")
    nms: float = Field(0.45, ge=0.0, le=1.0, description="IoU above which overlapping boxes are suppressed")
    padding: float = Field(
        0.15, ge=0.0, le=2.0, description="margin added around each box, as a fraction of its height"
    )
    tiling: Literal["auto", "on", "off"] = Field(
        "auto", description="tile frames larger than tile_size (plus the whole frame) to find small text"
    )
    tile_size: int = Field(640, ge=64, le=8192, description="tile edge in frame pixels")
    tile_overlap: float = Field(0.2, ge=0.0, lt=0.9, description="fraction of a tile shared with its neighbour")
    min_box_height: int = Field(6, ge=1, description="boxes lower than this (frame pixels) are dropped")


class OcrSettings(Strict):
    engine: Literal["tesserocr", "pytesseract"] = Field(
        "tesserocr", description="tesserocr keeps one Tesseract per process; pytesseract runs one per crop"
    )
    languages: str = Field("eng", pattern=r"^[A-Za-z0-9_]+(\+[A-Za-z0-9_]+)*$", description="Tesseract languages, '+'-joined")
    tessdata: Path | None = Field(None, description="tessdata folder; unset = $TESSDATA_PREFIX, else the one tesseract reports")
    psm: int = Field(7, ge=0, le=13, description="page segmentation mode; 7 = a single text line")
    text_height: int = Field(
        36, ge=8, le=200, description="crops are scaled so their text is about this many pixels high"
    )
    binarize: bool = Field(False, description="Otsu-binarize crops before OCR")
    invert_light_on_dark: bool = Field(True, description="invert crops whose text is lighter than the background")
    min_confidence: float = Field(
        0.0, ge=0.0, le=100.0, description="readings with lower mean word confidence count as no text"
    )


class ImageSettings(Strict):
    max_pixels: int = Field(
        100_000_000, ge=1, description="images with more pixels are refused (decompression bombs)"
    )


class Settings(Strict):
    """All of textwatch's settings; one object is passed around, not loose values."""

    detector: DetectorSettings = Field(default_factory=DetectorSettings)
    ocr: OcrSettings = Field(default_factory=OcrSettings)
    image: ImageSettings = Field(default_factory=ImageSettings)
    source: Path | None = Field(None, exclude=True, description="file this was loaded from, if any")

    @model_validator(mode="after")
    def _tiles_larger_than_boxes(self) -> Settings:
        if self.detector.min_box_height >= self.detector.tile_size:
            raise ValueError("detector.min_box_height must be smaller than detector.tile_size")
        return self

    def resolve_paths(self, base: Path) -> Settings:
        """Make relative model/tessdata paths absolute against `base`."""
        det = self.detector
        det.cfg = _absolute(det.cfg, base)
        det.weights = _absolute(det.weights, base)
        if self.ocr.tessdata is not None:
            self.ocr.tessdata = _absolute(self.ocr.tessdata, base)
        return self


def _absolute(path: Path, base: Path) -> Path:
    path = path.expanduser()
    return path if path.is_absolute() else (base / path).resolve()


def load_settings(path: str | Path | None) -> Settings:
    """Load and validate a TOML config; None gives the built-in defaults."""
    if path is None:
        return Settings().resolve_paths(DEFAULT_CONFIG.parent)
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"config file {path} not readable: {err}") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config file {path} is not valid TOML: {err}") from None
    try:
        settings = Settings.model_validate(data)
    except ValidationError as err:
        raise ConfigError(f"{path}: {describe_validation_error(err)}") from None
    settings.source = path.resolve()
    return settings.resolve_paths(path.resolve().parent)


def describe_validation_error(err: ValidationError) -> str:
    """The first problem as one line, naming its dotted key path."""
    problems = []
    for item in err.errors():
        where = ".".join(str(part) for part in item["loc"]) or "(top level)"
        if item["type"] == "extra_forbidden":
            problems.append(f"unknown key '{where}'")
        else:
            problems.append(f"'{where}': {item['msg']}")
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return problems[0] + more


HEADER = """\
# textwatch configuration (TOML). Every key is optional; the values below are
# the built-in defaults. Unknown keys are errors. Relative paths are resolved
# against the folder of this file. Check a config with: textwatch check -c FILE
# This file is generated from the schema in daemon/textwatch/config.py by
# `python -m textwatch.config > config/textwatch.toml`; a test keeps them equal.
"""


def render_default_config() -> str:
    """The commented default config: one `# description` line above every key."""
    parts = [HEADER]
    defaults = Settings().model_dump(mode="json", exclude={"source"})
    for name, field in Settings.model_fields.items():
        if name == "source":
            continue
        parts.append(f"\n[{name}]\n")
        section = field.annotation
        for key, sub in section.model_fields.items():  # type: ignore[union-attr]
            value = defaults[name][key]
            parts.append(f"# {sub.description}\n")
            parts.append(f"{key} = {_toml_value(value)}\n" if value is not None else f"# {key} = \"/usr/share/tesseract-ocr/5/tessdata\"\n")
    return "".join(parts)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value) if isinstance(value, float) else f"{value:_}" if value >= 100_000 else str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


if __name__ == "__main__":
    print(render_default_config(), end="")
