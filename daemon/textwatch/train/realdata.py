"""Real training images from ../shared/train: ICDAR 2015 scene words and SROIE receipt lines.

The detector is taught text *lines*, but ICDAR 2015 annotates *words*. Words are
grouped into lines by this rule (applied to the axis-aligned word boxes, pairs
tried in order of increasing gap, groups joined transitively):

  two words belong to the same line when
  1. their heights are similar: min(h_a, h_b) / max(h_a, h_b) >= `height_ratio` (0.5);
  2. they share the baseline: their vertical overlap is >= `overlap` (0.6) x the
     smaller height;
  3. they are close: the horizontal gap between them is < `gap` (1.0) x their
     mean height (a wider gap starts a new box, like the synthetic renderer's
     GAP_FACTOR); and
  4. the merged line box would not swallow a do-not-care region: no `###` box
     may have more than 30 % of its area inside the merged box unless it already
     had that much inside one of the two parts.

`###` regions (illegible text) become *ignore* boxes: the loss must neither
reward nor punish detections there. SROIE boxes are already lines and are used
as they are (lines made only of '*', '-', '=' or '.' are ignored: the detector
need not find rules of asterisks, but must not be punished for it either).

Images are decoded lazily into a small pool that is refreshed one image at a
time (`ImagePool`): every cached image serves several random crops, so a 2-core
trainer is not bound by JPEG decoding. Crops run from the whole frame (what
the runtime letterboxes when it does not tile) down to a 1:1 network-sized tile,
so text appears both tiny and at its native size.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from textwatch.config import PROJECT_ROOT
from textwatch.errors import InputError, InputMissing

log = logging.getLogger(__name__)

ICDAR = "icdar2015_train"
SROIE = "sroie_receipts"
_RULE_CHARS = set("*-=._ ")
NEW_OVERLAP = 0.1  # teacher box: at most this share of its area on annotations -> a new line
COVERED = 0.8  # teacher box: at least this share inside annotations -> nothing new (dropped)


class RealSettings(BaseModel):
    """How real images are cropped, cached and grouped ([data.real] in train.toml)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    whole_frame_p: float = Field(0.25, ge=0, le=1, description="chance of using the whole image, letterboxed")
    crop_min: float = Field(1.0, gt=0.2, le=4, description="smallest crop side as a multiple of the network side (1 = 1:1 tile)")
    focus_text_p: float = Field(0.7, ge=0, le=1, description="chance a crop is centred near a random text line")
    pool_size: int = Field(32, ge=1, le=1000, description="decoded images kept per real set")
    pool_refresh: float = Field(0.25, gt=0, le=1, description="chance per sample of decoding a fresh image into the pool")
    line_height_ratio: float = Field(0.5, gt=0, le=1, description="word grouping: min/max word height")
    line_overlap: float = Field(0.6, gt=0, le=1, description="word grouping: vertical overlap / smaller height")
    line_gap: float = Field(1.0, ge=0, le=5, description="word grouping: largest gap / mean height")
    teacher_dir: Path | None = Field(
        None,
        description="folder of `textwatch teacher` label files (<set>.jsonl), merged with the ground truth "
        "by realdata.merge_teacher; relative to the project root; unset = ground truth only",
    )
    holdout_every: int = Field(
        0, ge=0, le=1000,
        description="every Nth image of each real set (manifest order) is kept out of training for the real validation; 0 = none",
    )


@dataclass(frozen=True)
class RealImage:
    """One annotated image: line boxes and ignore boxes in source pixels (xyxy, exclusive)."""

    path: Path
    width: int
    height: int
    lines: np.ndarray
    ignore: np.ndarray


def shared_train_root() -> Path | None:
    """`<repo>/../shared/train` when it exists, else None (synthetic data only)."""
    root = Path(__file__).resolve().parents[3].parent / "shared" / "train"
    return root if root.is_dir() else None


def _box(entry: dict) -> list[float]:
    """The manifest's inclusive pixel box as an exclusive xyxy box."""
    x1, y1, x2, y2 = entry["box"]
    return [float(x1), float(y1), float(x2) + 1, float(y2) + 1]


def _arr(boxes: list[list[float]]) -> np.ndarray:
    """A list of boxes as an (N, 4) float32 array (also when empty)."""
    return np.asarray(boxes, np.float32).reshape(-1, 4)


def _inter(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection area of one box `a` with each of boxes `b`."""
    w = np.clip(np.minimum(a[2], b[:, 2]) - np.maximum(a[0], b[:, 0]), 0, None)
    h = np.clip(np.minimum(a[3], b[:, 3]) - np.maximum(a[1], b[:, 1]), 0, None)
    return w * h


def same_line(a: np.ndarray, b: np.ndarray, s: RealSettings) -> bool:
    """Rules 1-3 of the module docstring: similar height, shared baseline, small gap."""
    ha, hb = a[3] - a[1], b[3] - b[1]
    if min(ha, hb) <= 0 or min(ha, hb) / max(ha, hb) < s.line_height_ratio:
        return False
    overlap = min(a[3], b[3]) - max(a[1], b[1])
    if overlap < s.line_overlap * min(ha, hb):
        return False
    gap = max(a[0], b[0]) - min(a[2], b[2])
    return bool(gap < s.line_gap * (ha + hb) / 2)


def _swallows(merged: np.ndarray, a: np.ndarray, b: np.ndarray, ignore: np.ndarray) -> bool:
    """Rule 4: the merged box would cover a do-not-care region that neither part covered."""
    if len(ignore) == 0:
        return False
    area = np.maximum((ignore[:, 2] - ignore[:, 0]) * (ignore[:, 3] - ignore[:, 1]), 1e-6)
    new = _inter(merged, ignore) > 0.3 * area
    old = (_inter(a, ignore) > 0.3 * area) | (_inter(b, ignore) > 0.3 * area)
    return bool((new & ~old).any())


def group_words(words: np.ndarray, ignore: np.ndarray, s: RealSettings) -> np.ndarray:
    """Group word boxes into line boxes by the rule in the module docstring."""
    n = len(words)
    if n == 0:
        return _arr([])
    parent = list(range(n))
    hull = {i: words[i].copy() for i in range(n)}

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    pairs = []
    for i in range(n):
        for j in range(i + 1, n):
            if same_line(words[i], words[j], s):
                gap = max(words[i][0], words[j][0]) - min(words[i][2], words[j][2])
                pairs.append((float(gap), i, j))
    for _, i, j in sorted(pairs):
        ri, rj = find(i), find(j)
        if ri == rj:
            continue
        a, b = hull[ri], hull[rj]
        merged = np.concatenate([np.minimum(a[:2], b[:2]), np.maximum(a[2:], b[2:])])
        if _swallows(merged, a, b, ignore):
            continue
        parent[rj] = ri
        hull[ri] = merged
    return _arr([hull[r].tolist() for r in sorted({find(i) for i in range(n)})])


def _record(folder: Path, rec: dict, s: RealSettings) -> RealImage:
    """One manifest line as a RealImage; ICDAR words grouped into lines."""
    entries = rec.get("lines") or []
    ignore = [_box(e) for e in entries if e.get("dont_care") or set(e.get("text", "")) <= _RULE_CHARS]
    keep = [_box(e) for e in entries if not (e.get("dont_care") or set(e.get("text", "")) <= _RULE_CHARS)]
    words = any(e.get("level") == "word" for e in entries)
    lines = group_words(_arr(keep), _arr(ignore), s) if words else _arr(keep)
    return RealImage(folder / rec["image"], int(rec["width"]), int(rec["height"]), lines, _arr(ignore))


def read_teacher_labels(teacher_dir: Path, name: str) -> dict[str, np.ndarray]:
    """image file name -> (N, 4) float32 teacher boxes (xyxy, exclusive), from `teacher_dir/name.jsonl`."""
    path = teacher_dir / f"{name}.jsonl"
    if not path.is_file():
        raise InputMissing(f"no teacher labels for {name!r} at {path}: run `textwatch teacher --out {teacher_dir}`")
    labels = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rec = json.loads(line)
                labels[rec["image"]] = _arr([[float(v) for v in b[:4]] for b in rec["boxes"]])
            except (KeyError, ValueError, TypeError) as err:
                raise InputError(f"{path}:{n}: bad teacher record: {err}") from err
    return labels


def merge_teacher(image: RealImage, teacher: np.ndarray) -> RealImage:
    """The ground truth plus what the teacher adds, by the rule in train/teacher.py's docstring:
    annotations win; an untouched teacher box is a new line; one that overlaps annotations
    without lying mostly inside them becomes an ignore region; the rest is dropped."""
    known = np.concatenate([image.lines, image.ignore])
    new, unsure = [], []
    for box in teacher:
        area = max(float((box[2] - box[0]) * (box[3] - box[1])), 1e-6)
        # Share of the teacher box on annotations (overlaps between annotations counted once at most).
        on_known = min(1.0, float(_inter(box, known).sum()) / area) if len(known) else 0.0
        if on_known <= NEW_OVERLAP:
            new.append(box)
        elif on_known < COVERED:
            unsure.append(box)
    lines = np.concatenate([image.lines, _arr([b.tolist() for b in new])])
    ignore = np.concatenate([image.ignore, _arr([b.tolist() for b in unsure])])
    return RealImage(image.path, image.width, image.height, lines, ignore)


def load_set(root: Path, name: str, s: RealSettings) -> list[RealImage]:
    """Read `root/name/manifest.jsonl`, merged with the teacher's labels when `s.teacher_dir` is set;
    a missing or empty set is an error, not an empty list."""
    manifest = root / name / "manifest.jsonl"
    if not manifest.is_file():
        raise InputMissing(f"training set {name!r} has no manifest at {manifest}")
    records = []
    with manifest.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if line.strip():
                try:
                    records.append(_record(manifest.parent, json.loads(line), s))
                except (KeyError, ValueError, TypeError) as err:
                    raise InputError(f"{manifest}:{n}: bad manifest record: {err}") from err
    if not records:
        raise InputError(f"{manifest} lists no images")
    if s.teacher_dir is not None:
        folder = s.teacher_dir if s.teacher_dir.is_absolute() else PROJECT_ROOT / s.teacher_dir
        labels = read_teacher_labels(folder, name)
        missing = [r.path.name for r in records if r.path.name not in labels]
        if missing:
            raise InputError(f"{folder / name}.jsonl has no labels for {len(missing)} images (e.g. {missing[0]}): re-run `textwatch teacher`")
        records = [merge_teacher(r, labels[r.path.name]) for r in records]
    return records


def split_holdout(images: list[RealImage], every: int) -> tuple[list[RealImage], list[RealImage]]:
    """(training, held out): every `every`-th image in manifest order is held out; 0 holds out nothing.

    A fixed rule, not a random draw, so every run and every resume holds out
    the same images, and the trainer's real validation can rebuild the list.
    """
    if every <= 0:
        return images, []
    return [im for i, im in enumerate(images) if (i + 1) % every], images[every - 1 :: every]


def decode(path: Path, flags: int = cv2.IMREAD_COLOR) -> np.ndarray:
    """Decode an image file as BGR; raise when it is missing or not an image."""
    data = np.fromfile(str(path), np.uint8) if path.is_file() else None
    if data is None:
        raise InputMissing(f"training image missing: {path}")
    img = cv2.imdecode(data, flags)
    if img is None:
        raise InputError(f"training image cannot be decoded: {path}")
    return img


class ImagePool:
    """A few decoded images; each sample reuses one, and now and then one is swapped for a fresh image.

    With `refresh` = 0.25 each decode serves about four differently cropped and
    augmented samples, which keeps JPEG decoding off the critical path while the
    pool still walks through the whole set over an epoch.
    """

    def __init__(self, paths: Sequence[Path], size: int, refresh: float, flags: int = cv2.IMREAD_COLOR) -> None:
        self.paths, self.size, self.refresh, self.flags = list(paths), size, refresh, flags
        self.slots: list[tuple[int, np.ndarray]] = []

    def _load(self, rng: np.random.Generator) -> tuple[int, np.ndarray]:
        """Decode a random image of the set."""
        idx = int(rng.integers(len(self.paths)))
        return idx, decode(self.paths[idx], self.flags)

    def get(self, rng: np.random.Generator) -> tuple[int, np.ndarray]:
        """(index into the set, decoded image) of a random pooled image."""
        if len(self.slots) < self.size:
            self.slots.append(self._load(rng))
            return self.slots[-1]
        slot = int(rng.integers(len(self.slots)))
        if rng.random() < self.refresh:
            self.slots[slot] = self._load(rng)
        return self.slots[slot]


def random_crop(
    rng: np.random.Generator, img: RealImage, width: int, height: int, s: RealSettings
) -> tuple[int, int, int, int]:
    """A crop (x0, y0, x1, y1) from whole frame down to `crop_min` x the network size, often around text."""
    W, H = img.width, img.height
    if rng.random() < s.whole_frame_p:
        return 0, 0, W, H
    aspect = (width / height) * float(np.exp(rng.uniform(np.log(0.75), np.log(16 / 9))))
    lo = min(max(width, height) * s.crop_min, max(W, H))
    side = float(np.exp(rng.uniform(np.log(lo), np.log(max(W, H)))))
    cw, ch = (side, side / aspect) if aspect >= 1 else (side * aspect, side)
    scale = min(1.0, W / cw, H / ch)
    cw, ch = max(8, int(cw * scale)), max(8, int(ch * scale))
    if len(img.lines) and rng.random() < s.focus_text_p:
        b = img.lines[int(rng.integers(len(img.lines)))]
        cx, cy = (b[0] + b[2]) / 2 + rng.uniform(-0.4, 0.4) * cw, (b[1] + b[3]) / 2 + rng.uniform(-0.4, 0.4) * ch
        x0, y0 = int(np.clip(cx - cw / 2, 0, W - cw)), int(np.clip(cy - ch / 2, 0, H - ch))
    else:
        x0, y0 = int(rng.integers(0, W - cw + 1)), int(rng.integers(0, H - ch + 1))
    return x0, y0, x0 + cw, y0 + ch


class RealCrops:
    """Random crops of one real set: image region plus its line and ignore boxes in crop pixels."""

    def __init__(self, images: Sequence[RealImage], settings: RealSettings) -> None:
        self.images = list(images)
        self.settings = settings
        self.pool = ImagePool([im.path for im in self.images], settings.pool_size, settings.pool_refresh)

    def crop(self, rng: np.random.Generator, width: int, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(pixels, line boxes, ignore boxes) of a random crop, boxes shifted into the crop (not yet clipped)."""
        idx, pixels = self.pool.get(rng)
        img = self.images[idx]
        if pixels.shape[:2] != (img.height, img.width):
            raise InputError(f"{img.path}: manifest says {img.width}x{img.height}, file is {pixels.shape[1]}x{pixels.shape[0]}")
        x0, y0, x1, y1 = random_crop(rng, img, width, height, self.settings)
        shift = np.float32([x0, y0, x0, y0])
        return pixels[y0:y1, x0:x1], img.lines - shift, img.ignore - shift


class TextFreeCrops:
    """Photo backgrounds: regions of the ICDAR images that hold no annotated box, do-not-care included.

    Images are decoded at half size (the backgrounds are resized anyway) and each
    pooled image keeps an integral image of its annotated area so a free
    rectangle is found with four lookups.
    """

    MARGIN = 6  # half-res pixels kept free around every annotated box

    def __init__(self, images: Sequence[RealImage], pool_size: int, refresh: float) -> None:
        self.images = list(images)
        self.pool = ImagePool([im.path for im in self.images], pool_size, refresh, cv2.IMREAD_REDUCED_COLOR_2)
        self._integrals: dict[int, np.ndarray] = {}

    def _integral(self, idx: int, shape: tuple[int, ...]) -> np.ndarray:
        """Integral image of the (half-res, dilated) annotated area of image `idx`."""
        if idx not in self._integrals:
            if len(self._integrals) > 4 * self.pool.size:
                self._integrals.clear()
            img = self.images[idx]
            mask = np.zeros(shape[:2], np.uint8)
            sx, sy = shape[1] / img.width, shape[0] / img.height
            for x0, y0, x1, y1 in np.concatenate([img.lines, img.ignore]):
                cv2.rectangle(mask, (int(x0 * sx) - self.MARGIN, int(y0 * sy) - self.MARGIN),
                              (int(x1 * sx) + self.MARGIN, int(y1 * sy) + self.MARGIN), 1, -1)
            self._integrals[idx] = cv2.integral(mask)
        return self._integrals[idx]

    def __call__(self, rng: np.random.Generator, w: int, h: int) -> np.ndarray | None:
        """A text-free photo region resized to w x h, or None when none was found in a few tries."""
        idx, pixels = self.pool.get(rng)
        ii = self._integral(idx, pixels.shape)
        H, W = pixels.shape[:2]
        for _ in range(12):
            cw = int(W * rng.uniform(0.15, 0.8))
            ch = int(cw * h / w)
            if ch > H or cw < 16 or ch < 16:
                continue
            x0, y0 = int(rng.integers(0, W - cw + 1)), int(rng.integers(0, H - ch + 1))
            if ii[y0 + ch, x0 + cw] - ii[y0, x0 + cw] - ii[y0 + ch, x0] + ii[y0, x0] == 0:
                return cv2.resize(pixels[y0 : y0 + ch, x0 : x0 + cw], (w, h), interpolation=cv2.INTER_LINEAR)
        return None
