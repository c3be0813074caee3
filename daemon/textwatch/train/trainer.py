"""`textwatch train`: train the text detector from a TOML recipe, export darknet files.

One run directory (`--out runs/NAME`) holds everything: `checkpoint.pt`
(model, EMA, optimizer, step, RNG; `--resume` continues from it), `cache.npy`
(pre-rendered samples, when the recipe asks for a cache), `curves.png`,
`metrics.json`, and at the end the deployable pair `<cfg name>` +
`<cfg stem>.weights` (EMA weights, darknet format 0.2.5) that
`cv2.dnn.readNetFromDarknet` loads.

Input convention (the detector must feed the same): letterboxed BGR frame,
converted to RGB and scaled to [0, 1] -- `cv2.dnn.blobFromImage(img, 1/255,
swapRB=True)`, darknet's own convention.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from textwatch.detect.darknet import DarknetModel, check_weights, parse_cfg
from textwatch.errors import ConfigError, ModelError
from textwatch.train.recipe import Recipe, TrainSection, load_recipe
from textwatch.train.loss import LossWeights, Targets, box_area, box_intersection, box_iou, cxcywh_to_xyxy, yolo_loss
from textwatch.detect.torchnet import DarknetNet, build_net, decode, load_darknet_weights, save_darknet_weights

if TYPE_CHECKING:  # data pulls in the scene renderers; the trainer imports it only where it draws
    from textwatch.train.data import Sample, SampleSource

CHECKPOINT = "checkpoint.pt"
BEST = "best"  # OUT/best.weights + OUT/best.json: the EMA weights of the best real-validation F1
CACHE = "cache.npy"  # images; labels beside it in cache.labels.npz


# --------------------------------------------------------------------------- data


SourceFactory = Callable[[int, int], "SampleSource"]  # (width, height) -> source


def _ignore_of(sample: Sample) -> np.ndarray:
    ignore = getattr(sample, "ignore", None)
    return np.zeros((0, 4), np.float32) if ignore is None else np.asarray(ignore, np.float32).reshape(-1, 4)


def _worker_rng(seed: int, stream: int) -> np.random.Generator:
    """Each worker (and each resume) draws its own independent stream from one seed."""
    info = get_worker_info()
    worker = info.id if info is not None else 0
    return np.random.default_rng([seed, stream, worker])


class StreamDataset(IterableDataset):  # type: ignore[type-arg]
    """Renders fresh samples forever: no repetition, costs CPU per sample."""

    def __init__(self, factory: SourceFactory, size: int, seed: int, stream: int) -> None:
        self.factory, self.size, self.seed, self.stream = factory, size, seed, stream

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        rng = _worker_rng(self.seed, self.stream)
        source = self.factory(self.size, self.size)
        while True:
            s = source.sample(rng)
            yield s.image, np.asarray(s.boxes, np.float32).reshape(-1, 4), _ignore_of(s)


@dataclass
class SampleCache:
    """N rendered samples in flat arrays: images N x H x W x 3, boxes/ignore with row offsets."""

    images: np.ndarray
    boxes: np.ndarray
    box_start: np.ndarray  # N+1 offsets into boxes
    ignore: np.ndarray
    ignore_start: np.ndarray

    def __len__(self) -> int:
        return len(self.images)

    def get(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        b = self.boxes[self.box_start[i] : self.box_start[i + 1]]
        g = self.ignore[self.ignore_start[i] : self.ignore_start[i + 1]]
        return self.images[i], b, g


def render_cache(factory: SourceFactory, size: int, count: int, seed: int, path: Path) -> None:
    """Render `count` samples once, deterministically from `seed`, straight to disk.

    Images go into a memory-mapped .npy as they are drawn, so a cache larger
    than RAM costs no memory; labels go into a small .npz beside it.
    """
    source, rng = factory(size, size), np.random.default_rng([seed, 0xCAC4E])
    images_tmp = path.with_suffix(".images.tmp.npy")
    images = np.lib.format.open_memmap(images_tmp, mode="w+", dtype=np.uint8, shape=(count, size, size, 3))
    boxes, ignore = [], []
    for i in range(count):
        s = source.sample(rng)
        if s.image.shape != (size, size, 3):
            raise ValueError(f"the data source drew a {s.image.shape} image for a {size}x{size} network")
        images[i] = s.image
        boxes.append(np.asarray(s.boxes, np.float32).reshape(-1, 4))
        ignore.append(_ignore_of(s))
    images.flush()
    del images
    labels_tmp = path.with_suffix(".labels.tmp.npz")
    np.savez(
        labels_tmp,
        boxes=np.concatenate(boxes),
        box_start=np.cumsum([0] + [len(b) for b in boxes]),
        ignore=np.concatenate(ignore),
        ignore_start=np.cumsum([0] + [len(g) for g in ignore]),
    )
    labels_tmp.replace(_labels_path(path))
    images_tmp.replace(path)  # last: its presence means the cache is complete


def _labels_path(path: Path) -> Path:
    return path.with_suffix(".labels.npz")


def load_cache(path: Path) -> SampleCache:
    with np.load(_labels_path(path)) as labels:
        fields = {k: labels[k] for k in SampleCache.__dataclass_fields__ if k != "images"}
    return SampleCache(images=np.load(path, mmap_mode="r"), **fields)


def augment_cached(
    image: np.ndarray, boxes: np.ndarray, ignore: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cheap variation so epochs over a cache are not identical: zoom-crop, colour, inversion.

    No flips: mirrored glyphs never occur in camera frames, and the detector
    would spend capacity on them.
    """
    h, w = image.shape[:2]
    zoom = rng.uniform(0.7, 1.0)
    cw, ch = int(w * zoom), int(h * zoom)
    x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    image = cv2.resize(image[y0 : y0 + ch, x0 : x0 + cw], (w, h), interpolation=cv2.INTER_LINEAR)
    window = (x0 / w, y0 / h, cw / w, ch / h)
    boxes, cut = _crop_boxes(boxes, window, keep=0.6)
    ignore = np.concatenate([_crop_boxes(ignore, window, keep=0.0)[0], cut]).astype(np.float32)
    gain = rng.uniform(0.7, 1.3, size=3) * rng.uniform(0.7, 1.3)
    image = np.clip(image.astype(np.float32) * gain + rng.uniform(-25, 25), 0, 255).astype(np.uint8)
    if rng.random() < 0.2:
        image = 255 - image  # light text on dark backgrounds
    return image, boxes, ignore


def _crop_boxes(
    boxes: np.ndarray, window: tuple[float, float, float, float], keep: float
) -> tuple[np.ndarray, np.ndarray]:
    """Map normalised boxes into a crop window (x0, y0, w, h).

    Returns the boxes keeping at least `keep` of their area, and the ones cut
    off more than that: those become ignore regions, since a half-visible line
    is neither clearly text nor background.
    """
    if not len(boxes):
        return boxes, boxes
    x0, y0, cw, ch = window
    out = (boxes - np.array([x0, y0, x0, y0], np.float32)) / np.array([cw, ch, cw, ch], np.float32)
    clipped = np.clip(out, 0.0, 1.0)
    area = (out[:, 2] - out[:, 0]) * (out[:, 3] - out[:, 1])
    inside = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
    visible = inside > 0
    ok = visible & (inside >= keep * np.maximum(area, 1e-12))
    return clipped[ok].astype(np.float32), clipped[visible & ~ok].astype(np.float32)


class CachedDataset(IterableDataset):  # type: ignore[type-arg]
    """Epochs over a pre-rendered cache with cheap augmentation: little CPU per sample."""

    def __init__(self, path: Path, seed: int, stream: int) -> None:
        self.path, self.seed, self.stream = path, seed, stream

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        rng = _worker_rng(self.seed, self.stream)
        cache = load_cache(self.path)
        while True:
            for i in rng.permutation(len(cache)):
                yield augment_cached(*cache.get(int(i)), rng)


@dataclass
class Batch:
    images: torch.Tensor  # B x 3 x H x W uint8, RGB
    targets: Targets


def collate(items: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> Batch:
    """Stack images (BGR -> RGB, still uint8) and pad boxes to the batch's largest count."""
    images = torch.from_numpy(np.stack([img[..., ::-1] for img, _, _ in items])).permute(0, 3, 1, 2).contiguous()
    boxes, valid = _pad([b for _, b, _ in items])
    ignore, ignore_valid = _pad([g for _, _, g in items])
    classes = torch.zeros(valid.shape, dtype=torch.long)
    return Batch(images, Targets(boxes, classes, valid, ignore, ignore_valid))


def _pad(arrays: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    longest = max((len(a) for a in arrays), default=0)
    out = torch.zeros(len(arrays), longest, 4)
    valid = torch.zeros(len(arrays), longest, dtype=torch.bool)
    for i, a in enumerate(arrays):
        out[i, : len(a)] = torch.from_numpy(np.asarray(a, np.float32).reshape(-1, 4))
        valid[i, : len(a)] = True
    return out, valid


# --------------------------------------------------------------------------- training state


class ModelEMA:
    """Exponential moving average of weights and BN statistics; what gets exported.

    The decay ramps in (d * (1 - exp(-updates / 2000))) so early, bad weights
    fade quickly instead of dominating a short run.
    """

    def __init__(self, net: DarknetNet, decay: float, updates: int = 0) -> None:
        self.net = copy.deepcopy(net).eval()
        self.decay, self.updates = decay, updates
        for p in self.net.parameters():
            p.requires_grad_(False)

    def update(self, net: DarknetNet) -> None:
        self.updates += 1
        d = self.decay * (1 - math.exp(-self.updates / 2000))
        with torch.no_grad():
            live = net.state_dict()
            for name, value in self.net.state_dict().items():
                if value.dtype.is_floating_point:
                    value.mul_(d).add_(live[name].detach(), alpha=1 - d)
                else:
                    value.copy_(live[name])


@dataclass
class History:
    """What the curves and metrics.json show: (step, value) series."""

    train: list[tuple[int, float]] = field(default_factory=list)
    val_loss: list[tuple[int, float]] = field(default_factory=list)
    precision: list[tuple[int, float]] = field(default_factory=list)
    recall: list[tuple[int, float]] = field(default_factory=list)
    real_precision: list[tuple[int, float]] = field(default_factory=list)
    real_recall: list[tuple[int, float]] = field(default_factory=list)


@dataclass
class Options:
    """Command-line overrides of the recipe."""

    out: Path
    resume: bool = False
    device: str = "auto"
    steps: int | None = None
    workers: int | None = None


def pick_device(name: str) -> torch.device:
    from textwatch.errors import BackendUnavailable

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailable("--device cuda asked for, but torch has no usable CUDA device")
    return torch.device(name)


def make_optimizer(net: DarknetNet, cfg: TrainSection) -> torch.optim.Optimizer:
    """Decay only conv weights: decaying BN scales and biases just fights the normalisation."""
    decay = [p for n, p in net.named_parameters() if n.endswith("conv.weight")]
    rest = [p for n, p in net.named_parameters() if not n.endswith("conv.weight")]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.momentum, 0.999))


def lr_factor(step: int, cfg: TrainSection) -> float:
    """Linear warmup, then cosine from 1 down to final_lr_ratio at the last step."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    span = max(1, cfg.steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    return cfg.final_lr_ratio + (1 - cfg.final_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


@dataclass
class State:
    """Everything that changes while training; a checkpoint is exactly this."""

    net: DarknetNet
    ema: ModelEMA
    optimizer: torch.optim.Optimizer
    step: int = 0
    history: History = field(default_factory=History)
    rng: np.random.Generator = field(default_factory=np.random.default_rng)


def save_checkpoint(state: State, path: Path, recipe: Recipe) -> None:
    payload = {
        "step": state.step,
        "model": state.net.state_dict(),
        "ema": state.ema.net.state_dict(),
        "ema_updates": state.ema.updates,
        "optimizer": state.optimizer.state_dict(),
        "history": state.history.__dict__,
        "numpy_rng": state.rng.bit_generator.state,
        "torch_rng": torch.get_rng_state(),
        "recipe": recipe.model_dump(mode="json"),
    }
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)  # a crash mid-save leaves the previous checkpoint intact


def load_checkpoint(state: State, path: Path) -> None:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise ConfigError(f"--resume: no checkpoint at {path}") from None
    state.net.load_state_dict(payload["model"])
    state.ema.net.load_state_dict(payload["ema"])
    state.ema.updates = payload["ema_updates"]
    state.optimizer.load_state_dict(payload["optimizer"])
    state.step = payload["step"]
    state.history = History(**{k: [tuple(p) for p in v] for k, v in payload["history"].items()})
    state.rng.bit_generator.state = payload["numpy_rng"]
    torch.set_rng_state(payload["torch_rng"])


# --------------------------------------------------------------------------- validation


@dataclass(frozen=True)
class ValResult:
    loss: float
    precision: float
    recall: float
    detections: int
    truths: int


def to_input(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    return images.to(device, non_blocking=True).float().div_(255.0)


def validate(net: DarknetNet, batches: list[Batch], recipe: Recipe, device: torch.device, drop_ignored: bool = False) -> ValResult:
    """Loss and precision/recall at IoU `match_iou` of `net` over a fixed held-out set.

    `drop_ignored` leaves detections that lie mostly in do-not-care regions out
    of the count (the real sets' rule: ICDAR's `###` words are neither right nor
    wrong). The synthetic validation keeps the older count, so its curve stays
    comparable with earlier runs.
    """
    net.eval()
    weights = _loss_weights(recipe)
    losses, hits, dets, truths = [], 0, 0, 0
    with torch.no_grad():
        for batch in batches:
            x = to_input(batch.images, device)
            raw = net(x)
            targets = batch.targets.to(device)
            loss, _ = yolo_loss(raw, targets, net.heads, x.shape[3], x.shape[2], weights)
            losses.append(float(loss) / len(x))
            rows = torch.cat(decode(net, raw, thresh=0.0, size=(x.shape[3], x.shape[2])), dim=1).cpu()
            for i in range(len(x)):
                found = detections(rows[i], recipe.val.conf_thresh, recipe.val.nms_thresh)
                if drop_ignored:
                    found = outside(found, batch.targets.ignore[i][batch.targets.ignore_valid[i]])
                truth = batch.targets.boxes[i][batch.targets.valid[i]]
                hits += count_hits(found, truth, recipe.val.match_iou)
                dets, truths = dets + len(found), truths + len(truth)
    return ValResult(
        loss=float(np.mean(losses)),
        precision=hits / dets if dets else 0.0,
        recall=hits / truths if truths else 0.0,
        detections=dets,
        truths=truths,
    )


def detections(rows: torch.Tensor, conf: float, nms: float) -> torch.Tensor:
    """Decoded rows (N x 5+C) -> kept boxes (K x 4, normalised xyxy) after score threshold and NMS."""
    scores = rows[:, 5:].max(1).values
    keep = scores > conf
    boxes, scores = cxcywh_to_xyxy(rows[keep, :4]), scores[keep]
    if not len(boxes):
        return boxes
    xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], 1).numpy().tolist()
    idx = cv2.dnn.NMSBoxes(xywh, scores.numpy().tolist(), conf, nms)
    return boxes[torch.as_tensor(np.asarray(idx, dtype=np.int64).reshape(-1))]


def outside(found: torch.Tensor, ignore: torch.Tensor, share: float = 0.5) -> torch.Tensor:
    """The detections less than `share` of whose area lies inside any one do-not-care box."""
    if not len(found) or not len(ignore):
        return found
    inside = box_intersection(found, ignore) / box_area(found).clamp(min=1e-9)[:, None]
    return found[inside.max(1).values < share]


def f1(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def count_hits(found: torch.Tensor, truth: torch.Tensor, match_iou: float) -> int:
    """Greedy one-to-one matching, highest IoU first: a truth is hit at most once."""
    if not len(found) or not len(truth):
        return 0
    iou = box_iou(found, truth)
    hits = 0
    while True:
        best = iou.max()
        if best < match_iou:
            return hits
        f, t = divmod(int(iou.argmax()), iou.shape[1])
        iou[f, :], iou[:, t] = -1.0, -1.0
        hits += 1


# --------------------------------------------------------------------------- reporting


def draw_curves(history: History, path: Path) -> None:
    """Train/val loss (log scale, left) and precision/recall (right) as a PNG, with cv2 only."""
    w, h, pad = 960, 400, 40
    canvas = np.full((h, w, 3), 255, np.uint8)
    half = (w - 3 * pad) // 2
    _plot(canvas, (pad, pad, half, h - 2 * pad), [(history.train, (200, 120, 0)), (history.val_loss, (0, 0, 220))], log=True)
    _plot(canvas, (2 * pad + half, pad, half, h - 2 * pad), [
        (history.precision, (0, 160, 0)), (history.recall, (160, 0, 160)),
        (history.real_precision, (0, 90, 0)), (history.real_recall, (90, 0, 90)),
    ], log=False)
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(canvas, "loss: train (blue) val (red), log scale", (pad, 25), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(canvas, "precision (green) recall (purple): synthetic light, real dark", (2 * pad + half, 25), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    if not cv2.imwrite(str(path), canvas):
        raise OSError(f"could not write {path}")


def _plot(canvas: np.ndarray, box: tuple[int, int, int, int], series: list[tuple[list[tuple[int, float]], tuple[int, int, int]]], log: bool) -> None:
    x0, y0, bw, bh = box
    cv2.rectangle(canvas, (x0, y0), (x0 + bw, y0 + bh), (180, 180, 180), 1)
    points = [(s, (math.log10(max(v, 1e-6)) if log else v)) for data, _ in series for s, v in data]
    if not points:
        return
    steps = [p[0] for p in points]
    values = [p[1] for p in points] + ([] if log else [0.0, 1.0])
    s_lo, s_hi = min(steps), max(max(steps), min(steps) + 1)
    v_lo, v_hi = min(values), max(max(values), min(values) + 1e-6)
    for data, colour in series:
        if not data:
            continue
        xy = [
            (x0 + int((s - s_lo) / (s_hi - s_lo) * bw), y0 + bh - int((((math.log10(max(v, 1e-6)) if log else v) - v_lo) / (v_hi - v_lo)) * bh))
            for s, v in data
        ]
        cv2.polylines(canvas, [np.array(xy, np.int32)], False, colour, 1, cv2.LINE_AA)
        if len(xy) < 50:  # sparse series (validation): mark the points, a lone one is otherwise invisible
            for point in xy:
                cv2.circle(canvas, point, 3, colour, -1, cv2.LINE_AA)
    cv2.putText(canvas, f"{(10**v_hi if log else v_hi):.3g}", (x0 + 2, y0 + 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1)
    cv2.putText(canvas, f"{(10**v_lo if log else v_lo):.3g}", (x0 + 2, y0 + bh - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1)


class Progress:
    """One updating stderr line on a terminal, a plain log line every `log_every` steps otherwise."""

    def __init__(self, total: int, start: int) -> None:
        self.total, self.start = total, start
        self.started = time.monotonic()
        self.tty = sys.stderr.isatty()

    def update(self, step: int, images: int, loss: float, parts: dict[str, float], size: int) -> None:
        elapsed = max(1e-6, time.monotonic() - self.started)
        rate = images / elapsed
        done = step - self.start
        eta = (self.total - step) * elapsed / max(1, done)
        line = (
            f"step {step}/{self.total}  loss {loss:.4f} (box {parts['box']:.3f} obj {parts['obj']:.4f} "
            f"cls {parts['cls']:.4f})  {size}px  {rate:.1f} img/s  eta {eta / 60:.1f} min"
        )
        sys.stderr.write(("\r" + line + "\x1b[K") if self.tty else line + "\n")
        sys.stderr.flush()

    def message(self, text: str) -> None:
        sys.stderr.write(("\n" if self.tty else "") + text + "\n")
        sys.stderr.flush()


# --------------------------------------------------------------------------- the run


def _loss_weights(recipe: Recipe) -> LossWeights:
    return LossWeights(**recipe.loss.model_dump())


def default_source_factory(recipe: Recipe, synthetic_only: bool = False) -> SourceFactory:
    """The data helper's `build_source` over the recipe's [data] table (minus cache_samples).

    Real sets come from ../shared/train beside the repository when it exists;
    without it build_source falls back to synthetic data and says so.
    `synthetic_only` (root None) is the validation set: crops of the real
    training images would not be held out.
    """
    from textwatch.train import data
    from textwatch.train.realdata import shared_train_root

    table, root = recipe.source_recipe, (None if synthetic_only else shared_train_root())
    data.parse_recipe(table)  # a bad [data] key fails now, not inside a worker process
    if synthetic_only:  # real sets off on purpose: not the "no shared/train folder" warning
        table = {**table, "weights": {**table.get("weights", {}), **{kind: 0.0 for kind in data.REAL_KINDS}}}

    def factory(width: int, height: int) -> SampleSource:
        return data.build_source(table, width, height, root)

    return factory


def prepare_model(recipe: Recipe, root: Path) -> DarknetModel:
    cfg = recipe.model.cfg if recipe.model.cfg.is_absolute() else root / recipe.model.cfg
    return parse_cfg(cfg)


def train(
    recipe: Recipe, options: Options, factory: SourceFactory, root: Path, val_factory: SourceFactory | None = None,
    real_root: Path | None = None,
) -> dict[str, Any]:
    """Run (or resume) training; return the final metrics also written to metrics.json.

    `factory` draws training samples, `val_factory` (default: `factory`) the
    fixed synthetic validation set; `real_root` (shared/train) holds the real
    images of the real validation; `root` resolves relative paths in the recipe.
    """
    cfg = recipe.train.model_copy(update={k: v for k, v in (("steps", options.steps), ("workers", options.workers)) if v is not None})
    recipe = recipe.model_copy(update={"train": cfg})
    out = options.out
    out.mkdir(parents=True, exist_ok=True)
    device = pick_device(options.device)
    torch.manual_seed(cfg.seed)
    model = prepare_model(recipe, root)
    state = new_state(model, recipe, root)
    if options.resume:
        load_checkpoint(state, out / CHECKPOINT)
    state.net.to(device)
    state.ema.net.to(device)
    _optimizer_to(state.optimizer, device)
    base = max(cfg.sizes)
    val = ValSets(held_out(val_factory or factory, base, recipe), real_held_out(recipe, model.width, real_root))
    loader = make_loader(factory, recipe, out, base, stream=state.step)
    progress = Progress(cfg.steps, state.step)
    train_loop(state, recipe, loader, val, device, progress, out)
    return export(state, model, recipe, val.synthetic, device, out)


def new_state(model: DarknetModel, recipe: Recipe, root: Path) -> State:
    net = build_net(model, recipe.train.seed)
    if recipe.model.init_weights is not None:
        path = recipe.model.init_weights
        load_darknet_weights(net, path if path.is_absolute() else root / path)
    return State(net, ModelEMA(net, recipe.train.ema_decay), make_optimizer(net, recipe.train), rng=np.random.default_rng(recipe.train.seed))


def _optimizer_to(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    for per_param in optimizer.state.values():
        for key, value in per_param.items():
            if isinstance(value, torch.Tensor) and key != "step":
                per_param[key] = value.to(device)


@dataclass(frozen=True)
class ValSets:
    """The fixed validation sets: synthetic scenes, and crops of held-out real images (may be empty)."""

    synthetic: list[Batch]
    real: list[Batch]


def held_out(factory: SourceFactory, size: int, recipe: Recipe) -> list[Batch]:
    """The fixed synthetic validation set: same seed every run and every resume, never trained on."""
    return fixed_batches(factory(size, size), recipe.val.samples, np.random.default_rng([recipe.val.seed, 0x7A1]), recipe)


def real_held_out(recipe: Recipe, size: int, root: Path | None) -> list[Batch]:
    """`val.real_samples` fixed crops of the held-out real images at the deploy size; [] when there are none."""
    if not recipe.val.real_samples:
        return []
    from textwatch.train import data

    source = data.held_out_source(recipe.source_recipe, size, size, root)
    if source is None:
        print("real validation off: no held-out real images (needs ../shared/train and [data.real] holdout_every)", file=sys.stderr)
        return []
    return fixed_batches(source, recipe.val.real_samples, np.random.default_rng([recipe.val.seed, 0x2EA1]), recipe)


def fixed_batches(source: SampleSource, count: int, rng: np.random.Generator, recipe: Recipe) -> list[Batch]:
    items = []
    for _ in range(count):
        s = source.sample(rng)
        items.append((s.image, np.asarray(s.boxes, np.float32).reshape(-1, 4), _ignore_of(s)))
    step = recipe.train.batch_size
    return [collate(items[i : i + step]) for i in range(0, len(items), step)]


def make_loader(factory: SourceFactory, recipe: Recipe, out: Path, size: int, stream: int) -> Iterator[Batch]:
    """Endless batches, from the cache when the recipe asks for one (rendered once per run dir)."""
    cfg = recipe.train
    if recipe.cache_samples:
        path = out / CACHE
        if not path.exists():
            render_cache(factory, size, recipe.cache_samples, cfg.seed, path)
        cached = np.load(path, mmap_mode="r").shape
        if cached != (recipe.cache_samples, size, size, 3):
            raise ConfigError(f"{path} holds {cached[0]} samples of {cached[1]}x{cached[2]} but the recipe asks "
                              f"for {recipe.cache_samples} at {size}x{size}: delete it to re-render")
        dataset: IterableDataset = CachedDataset(path, cfg.seed, stream)  # type: ignore[type-arg]
    else:
        dataset = StreamDataset(factory, size, cfg.seed, stream)
    loader = DataLoader(
        dataset,
        batch_size=cfg.batch_size,
        num_workers=cfg.workers,
        collate_fn=collate,
        persistent_workers=cfg.workers > 0,
        prefetch_factor=2 if cfg.workers > 0 else None,
    )
    return iter(loader)


def train_loop(
    state: State, recipe: Recipe, loader: Iterator[Batch], val: ValSets, device: torch.device, progress: Progress, out: Path
) -> None:
    """The steps: draw a size, one optimizer step, EMA, then log / validate / checkpoint when due."""
    cfg, weights = recipe.train, _loss_weights(recipe)
    size, images = max(cfg.sizes), 0
    state.net.train()
    while state.step < cfg.steps:
        if state.step % cfg.scale_every == 0:
            size = int(state.rng.choice(cfg.sizes))
        batch = next(loader)
        loss, parts = train_step(state, batch, size, weights, cfg, device)
        state.ema.update(state.net)
        state.step += 1
        images += len(batch.images)
        _after_step(state, recipe, val, device, progress, out, loss, parts, size, images)


def bf16_fast(device_type: str) -> bool:
    """bf16 autocast pays on CUDA and on CPUs with bf16 matrix units (Intel AMX, AVX512-BF16:
    `lscpu` flags amx_bf16 / avx512_bf16); elsewhere the CPU emulates it, slower than fp32."""
    if device_type == "cuda":
        return True
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def train_step(
    state: State, batch: Batch, size: int, weights: LossWeights, cfg: TrainSection, device: torch.device
) -> tuple[float, dict[str, float]]:
    """One optimizer step at net size `size` (the batch is resized; boxes are normalised)."""
    for group in state.optimizer.param_groups:
        group["lr"] = cfg.lr * lr_factor(state.step, cfg)
    x = to_input(batch.images, device)
    if x.shape[-1] != size or x.shape[-2] != size:
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    targets = batch.targets.to(device)
    amp = cfg.amp and bf16_fast(device.type)
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
        raw = state.net(x)
    loss, parts = yolo_loss([r.float() for r in raw], targets, state.net.heads, size, size, weights)
    if not torch.isfinite(loss):
        raise FloatingPointError(f"loss became {float(loss)} at step {state.step}: lower train.lr or check the data")
    state.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(state.net.parameters(), cfg.grad_clip)
    state.optimizer.step()
    return float(loss.detach()) / len(x), parts


def _after_step(
    state: State, recipe: Recipe, val: ValSets, device: torch.device, progress: Progress,
    out: Path, loss: float, parts: dict[str, float], size: int, images: int,
) -> None:
    cfg = recipe.train
    if state.step % cfg.log_every == 0 or state.step == cfg.steps:
        state.history.train.append((state.step, loss))
        progress.update(state.step, images, loss, parts, size)
    if state.step % recipe.val.every == 0 or state.step == cfg.steps:
        result = validate(state.ema.net, val.synthetic, recipe, device)
        state.history.val_loss.append((state.step, result.loss))
        state.history.precision.append((state.step, result.precision))
        state.history.recall.append((state.step, result.recall))
        progress.message(f"val @ {state.step}: loss {result.loss:.4f} P {result.precision:.3f} R {result.recall:.3f} ({result.detections} det / {result.truths} true)")
        if val.real:
            validate_real(state, val.real, recipe, device, progress, out)
        draw_curves(state.history, out / "curves.png")
        state.net.train()
    if state.step % cfg.checkpoint_every == 0 or state.step == cfg.steps:
        save_checkpoint(state, out / CHECKPOINT, recipe)


def validate_real(state: State, batches: list[Batch], recipe: Recipe, device: torch.device, progress: Progress, out: Path) -> None:
    """Precision/recall on the held-out real crops; a new best F1 writes its EMA weights to OUT/best.weights."""
    history = state.history
    best = max((f1(p, r) for (_, p), (_, r) in zip(history.real_precision, history.real_recall)), default=-1.0)
    result = validate(state.ema.net, batches, recipe, device, drop_ignored=True)
    history.real_precision.append((state.step, result.precision))
    history.real_recall.append((state.step, result.recall))
    score = f1(result.precision, result.recall)
    progress.message(f"real val @ {state.step}: P {result.precision:.3f} R {result.recall:.3f} F1 {score:.3f} "
                     f"({result.detections} det / {result.truths} true)")
    if score > best:
        write_ema_weights(state, recipe, out / f"{BEST}.weights")
        summary = {"step": state.step, "precision": result.precision, "recall": result.recall, "f1": score}
        (out / f"{BEST}.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")


def write_ema_weights(state: State, recipe: Recipe, path: Path) -> int:
    """The EMA weights as darknet .weights (a CPU copy; training goes on); returns the images seen."""
    seen = state.step * recipe.train.batch_size
    save_darknet_weights(copy.deepcopy(state.ema.net).to("cpu"), path, seen)
    return seen


def export(state: State, model: DarknetModel, recipe: Recipe, val_batches: list[Batch], device: torch.device, out: Path) -> dict[str, Any]:
    """Write cfg + EMA weights + metrics.json and prove OpenCV loads the pair."""
    cfg_out = out / model.path.name
    cfg_out.write_text(model.path.read_text(encoding="utf-8"), encoding="utf-8")
    weights_out = out / (model.path.stem + ".weights")
    seen = write_ema_weights(state, recipe, weights_out)
    check_weights(parse_cfg(cfg_out), weights_out)
    try:
        cv2.dnn.readNetFromDarknet(str(cfg_out), str(weights_out))
    except cv2.error as err:
        raise ModelError(f"OpenCV cannot load the exported {cfg_out.name}: {err}") from None
    result = validate(state.ema.net, val_batches, recipe, device)
    metrics = {
        "step": state.step,
        "images_seen": seen,
        "final_val": result.__dict__,
        "best_real_val": json.loads(best.read_text(encoding="utf-8")) if (best := out / f"{BEST}.json").exists() else None,
        "history": state.history.__dict__,
        "cfg": cfg_out.name,
        "weights": weights_out.name,
        "input": "letterboxed, RGB, scaled 1/255 (blobFromImage(img, 1/255, swapRB=True))",
        "recipe": recipe.model_dump(mode="json"),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    draw_curves(state.history, out / "curves.png")
    return metrics


# --------------------------------------------------------------------------- CLI


def run(args: argparse.Namespace) -> int:
    """Entry point of `textwatch train`; errors propagate as TextwatchError for the CLI to print."""
    recipe = load_recipe(args.recipe)
    if args.steps is not None and args.steps < 1:
        raise ConfigError(f"--steps must be >= 1, got {args.steps}")
    if args.out.exists() and (args.out / CHECKPOINT).exists() and not args.resume:
        raise ConfigError(f"{args.out} already holds a checkpoint: pass --resume or choose another --out")
    root = Path.cwd()
    options = Options(out=args.out, resume=args.resume, device=args.device, steps=args.steps, workers=args.workers)
    factory = default_source_factory(recipe)
    from textwatch.train.realdata import shared_train_root

    val_factory = default_source_factory(recipe, synthetic_only=True)
    metrics = train(recipe, options, factory, root, val_factory, real_root=shared_train_root())
    final = metrics["final_val"]
    print(f"wrote {args.out / metrics['cfg']} and {metrics['weights']}: val P {final['precision']:.3f} R {final['recall']:.3f}")
    return 0
