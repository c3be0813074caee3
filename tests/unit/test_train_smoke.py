"""A tiny real training run on CPU: the loss learns, checkpoints resume, OpenCV loads the result.

The data is a deterministic random-rectangles source (dark bars on light
backgrounds, labelled as "text") so the test needs no fonts and no ../shared;
the synthetic text renderer has its own tests.
"""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the torch extra is not installed")

from support.paths import ROOT  # noqa: E402
from textwatch.detect.darknet import check_weights, parse_cfg  # noqa: E402
from textwatch.errors import ConfigError  # noqa: E402
from textwatch.train import trainer  # noqa: E402
from textwatch.train.recipe import add_arguments as add_train_arguments  # noqa: E402
from textwatch.train.loss import LossWeights, yolo_loss  # noqa: E402
from textwatch.detect.torchnet import build_net  # noqa: E402

TINY_CFG = ROOT / "backup" / "textwatch-tiny.cfg"
SIZE = 128


@dataclass
class RectSample:
    image: np.ndarray
    boxes: np.ndarray
    ignore: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))


@dataclass
class RectangleSource:
    """1-4 wide dark bars (text-line shaped) on a light noisy background; one ignore bar at times."""

    width: int
    height: int

    def sample(self, rng: np.random.Generator) -> RectSample:
        image = np.full((self.height, self.width, 3), int(rng.integers(170, 256)), np.uint8)
        image = np.clip(image + rng.normal(0, 6, image.shape), 0, 255).astype(np.uint8)
        boxes = []
        for _ in range(int(rng.integers(1, 5))):
            bw, bh = rng.uniform(0.25, 0.7) * self.width, rng.uniform(0.06, 0.14) * self.height
            x, y = rng.uniform(0, self.width - bw), rng.uniform(0, self.height - bh)
            cv2.rectangle(image, (int(x), int(y)), (int(x + bw), int(y + bh)), (30, 30, 30), -1)
            boxes.append([int(x) / self.width, int(y) / self.height, int(x + bw) / self.width, int(y + bh) / self.height])
        ignore = np.zeros((0, 4), np.float32)
        if rng.random() < 0.3:
            ignore = np.array([[0.0, 0.9, 0.2, 1.0]], np.float32)
        return RectSample(image, np.clip(np.array(boxes, np.float32), 0, 1), ignore)


def small_cfg(tmp_path: Path) -> Path:
    text = TINY_CFG.read_text(encoding="utf-8")
    text = re.sub(r"(?m)^width=.*$", f"width={SIZE}", text, count=1)
    text = re.sub(r"(?m)^height=.*$", f"height={SIZE}", text, count=1)
    path = tmp_path / "textwatch-tiny.cfg"
    path.write_text(text, encoding="utf-8")
    return path


def write_recipe(tmp_path: Path, cfg: Path, cache: int) -> Path:
    recipe = tmp_path / "train.toml"
    recipe.write_text(
        f"""
[model]
cfg = "{cfg}"

[train]
seed = 3
steps = 4
batch_size = 4
lr = 0.002
warmup_steps = 2
sizes = [{SIZE}, {SIZE - 32}]
scale_every = 2
workers = 1
checkpoint_every = 2
log_every = 1

[val]
every = 2
samples = 4

[data]
cache_samples = {cache}
""",
        encoding="utf-8",
    )
    return recipe


def rect_factory(width: int, height: int) -> RectangleSource:
    return RectangleSource(width, height)


def test_loss_decreases_when_overfitting_one_batch() -> None:
    """The loss and the model agree on the output layout: one fixed batch can be learned."""
    torch.manual_seed(0)
    model = parse_cfg(TINY_CFG)
    net = build_net(model, seed=0).train()
    source, rng = RectangleSource(SIZE, SIZE), np.random.default_rng(0)
    batch = trainer.collate([(s.image, s.boxes, s.ignore) for s in (source.sample(rng) for _ in range(4))])
    x = batch.images.float() / 255
    optimizer = torch.optim.AdamW(net.parameters(), lr=2e-3)
    losses = []
    for _ in range(25):
        loss, parts = yolo_loss(net(x), batch.targets, net.heads, SIZE, SIZE, LossWeights())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        assert parts["positives"] > 0
    assert losses[-1] < 0.5 * losses[0], losses


def test_train_resume_and_export(tmp_path: Path) -> None:
    cfg = small_cfg(tmp_path)
    recipe = trainer.load_recipe(write_recipe(tmp_path, cfg, cache=12))
    out = tmp_path / "run"
    first = trainer.train(recipe, trainer.Options(out=out, device="cpu", steps=2), rect_factory, ROOT)
    assert first["step"] == 2
    assert (out / "checkpoint.pt").is_file() and (out / "cache.npy").is_file()
    saved = torch.load(out / "checkpoint.pt", weights_only=False)
    assert saved["step"] == 2

    final = trainer.train(recipe, trainer.Options(out=out, device="cpu", resume=True), rect_factory, ROOT)
    assert final["step"] == 4
    assert [s for s, _ in final["history"]["train"]] == [1, 2, 3, 4], "resume restarted the history"
    assert [s for s, _ in final["history"]["val_loss"]] == [2, 4]

    weights = out / "textwatch-tiny.weights"
    exported = parse_cfg(out / "textwatch-tiny.cfg")
    check_weights(exported, weights)
    net = cv2.dnn.readNetFromDarknet(str(out / "textwatch-tiny.cfg"), str(weights))
    blob = cv2.dnn.blobFromImage(RectangleSource(SIZE, SIZE).sample(np.random.default_rng(1)).image, 1 / 255, swapRB=True)
    net.setInput(blob)
    outputs = net.forward(net.getUnconnectedOutLayersNames())
    assert len(outputs) == 3 and all(np.isfinite(o).all() for o in outputs)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["step"] == 4 and 0.0 <= metrics["final_val"]["recall"] <= 1.0
    assert (out / "curves.png").is_file() and cv2.imread(str(out / "curves.png")) is not None


def test_streaming_data_without_cache(tmp_path: Path) -> None:
    """cache_samples = 0 renders every sample fresh, in-process with workers = 0."""
    recipe = trainer.load_recipe(write_recipe(tmp_path, small_cfg(tmp_path), cache=0))
    metrics = trainer.train(recipe, trainer.Options(out=tmp_path / "run", device="cpu", steps=1, workers=0), rect_factory, ROOT)
    assert metrics["step"] == 1 and not (tmp_path / "run" / "cache.npy").exists()


def test_unknown_recipe_key_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[train]\nstep = 10\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="train.step"):
        trainer.load_recipe(path)


def test_sizes_must_be_multiples_of_32(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[train]\nsizes = [416, 400]\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="multiples of 32"):
        trainer.load_recipe(path)


def test_cli_refuses_to_overwrite_a_run(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(b"x")
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    args = parser.parse_args(["--recipe", str(write_recipe(tmp_path, small_cfg(tmp_path), 0)), "--out", str(out)])
    with pytest.raises(ConfigError, match="--resume"):
        trainer.run(args)


def test_cli_run_with_the_real_data_source(tmp_path: Path) -> None:
    """`textwatch train` end to end: recipe -> data.build_source (cache_samples stripped) -> export."""
    recipe = write_recipe(tmp_path, small_cfg(tmp_path), cache=0)
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    out = tmp_path / "run"
    args = parser.parse_args(["--recipe", str(recipe), "--out", str(out), "--steps", "1", "--workers", "0", "--device", "cpu"])
    assert trainer.run(args) == 0
    check_weights(parse_cfg(out / "textwatch-tiny.cfg"), out / "textwatch-tiny.weights")


def write_real_set(root: Path, name: str, count: int) -> None:
    """A tiny real set in shared/train's manifest format: dark bars labelled as text lines."""
    folder = root / name
    folder.mkdir(parents=True)
    rng = np.random.default_rng(len(name))
    with (folder / "manifest.jsonl").open("w", encoding="utf-8") as manifest:
        for index in range(count):
            sample = RectangleSource(320, 240).sample(rng)
            cv2.imwrite(str(folder / f"img_{index}.png"), sample.image)
            lines = [{"text": "bar", "box": [int(x0 * 320), int(y0 * 240), int(x1 * 320) - 1, int(y1 * 240) - 1]}
                     for x0, y0, x1, y1 in sample.boxes]
            manifest.write(json.dumps({"image": f"img_{index}.png", "width": 320, "height": 240, "lines": lines}) + "\n")


def test_real_validation_scores_held_out_images_and_keeps_the_best_weights(tmp_path: Path) -> None:
    """The real validation (session 3): synthetic validation did not predict the real eval sets, so a run
    also scores crops of real images it never trained on and writes the best of them to best.weights."""
    root = tmp_path / "shared-train"
    write_real_set(root, "icdar2015_train", 4)
    write_real_set(root, "sroie_receipts", 4)
    recipe_path = write_recipe(tmp_path, small_cfg(tmp_path), cache=0)
    text = recipe_path.read_text(encoding="utf-8")
    text = text.replace("samples = 4\n", "samples = 4\nreal_samples = 6\n")
    text += "\n[data.weights]\nsign = 1.0\nicdar = 0.5\nsroie = 0.5\n\n[data.real]\nholdout_every = 2\n"
    recipe_path.write_text(text, encoding="utf-8")
    recipe = trainer.load_recipe(recipe_path)

    held = trainer.real_held_out(recipe, SIZE, root)
    assert sum(len(batch.images) for batch in held) == 6
    out = tmp_path / "run"
    metrics = trainer.train(recipe, trainer.Options(out=out, device="cpu", steps=2, workers=0), rect_factory, ROOT,
                            real_root=root)

    assert [step for step, _ in metrics["history"]["real_recall"]] == [2]
    best = json.loads((out / "best.json").read_text(encoding="utf-8"))
    assert best["step"] == 2 and metrics["best_real_val"] == best
    check_weights(parse_cfg(out / "textwatch-tiny.cfg"), out / "best.weights")
    assert trainer.real_held_out(recipe, SIZE, None) == []  # no shared/train: off, not an error


def test_outside_drops_detections_in_do_not_care_regions() -> None:
    found = torch.tensor([[0.0, 0.0, 0.2, 0.1], [0.5, 0.5, 0.9, 0.6], [0.1, 0.8, 0.3, 0.9]])
    ignore = torch.tensor([[0.0, 0.0, 0.15, 0.1], [0.0, 0.7, 1.0, 1.0]])
    kept = trainer.outside(found, ignore)
    assert torch.equal(kept, found[1:2])  # 75% of the first lies in an ignore box, the third wholly
    assert trainer.outside(found, torch.zeros(0, 4)).shape == (3, 4)
