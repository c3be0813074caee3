"""Anchor boxes for the detector's [yolo] heads, by k-means over the training mix's line sizes.

Why our own anchors: the seed's cfg carries COCO-style anchors (12x16 ... 459x401),
mostly tall or square, while text lines are wide and thin, so few of them matched
a line well. Distance is 1 - IoU of boxes aligned at a common corner (the YOLOv2
choice): plain Euclidean k-means would let the wide boxes dominate.

    python -m textwatch.train.anchors --samples 2000

prints `anchors = w1, h1, ...` (network pixels, sorted by area) for the cfg.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

from textwatch.train.data import SampleSource, build_source
from textwatch.train.recipe import data_table
from textwatch.train.realdata import shared_train_root


def wh_iou(wh: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """IoU (N, K) of boxes and centroids given as widths and heights, aligned at one corner."""
    inter = np.minimum(wh[:, None, 0], centroids[None, :, 0]) * np.minimum(wh[:, None, 1], centroids[None, :, 1])
    union = (wh[:, 0] * wh[:, 1])[:, None] + (centroids[:, 0] * centroids[:, 1])[None, :] - inter
    return inter / union


def kmeans_anchors(wh: np.ndarray, k: int, seed: int, iters: int = 300) -> np.ndarray:
    """k anchors (k, 2) in the units of `wh`, sorted by area, by k-means with 1 - IoU distance.

    Seeding is k-means++ on the same distance; centroids are the median of their
    members (robust to the long tail of very wide lines).
    """
    wh = np.asarray(wh, np.float64).reshape(-1, 2)
    wh = wh[(wh > 0).all(1)]
    if len(wh) < k:
        raise ValueError(f"need at least k={k} positive box sizes, got {len(wh)}")
    rng = np.random.default_rng(seed)
    centroids = wh[[int(rng.integers(len(wh)))]]
    while len(centroids) < k:
        d = (1 - wh_iou(wh, centroids)).min(1) ** 2
        centroids = np.vstack([centroids, wh[int(rng.choice(len(wh), p=d / d.sum()))] if d.sum() > 0 else wh[int(rng.integers(len(wh)))]])
    assign = np.full(len(wh), -1)
    for _ in range(iters):
        new = wh_iou(wh, centroids).argmax(1)
        if np.array_equal(new, assign):
            break
        assign = new
        for j in range(k):
            members = wh[assign == j]
            if len(members):
                centroids[j] = np.median(members, 0)
    return centroids[np.argsort(centroids[:, 0] * centroids[:, 1])].astype(np.float32)


def collect_box_sizes(source: SampleSource, rng: np.random.Generator, n: int, width: int, height: int) -> np.ndarray:
    """Widths and heights (M, 2) in network pixels of the line boxes in `n` samples of the mix."""
    sizes = []
    for _ in range(n):
        b = source.sample(rng).boxes
        sizes.append(np.stack([(b[:, 2] - b[:, 0]) * width, (b[:, 3] - b[:, 1]) * height], 1))
    return np.concatenate(sizes).astype(np.float32) if sizes else np.zeros((0, 2), np.float32)


def mean_best_iou(wh: np.ndarray, anchors: np.ndarray) -> float:
    """Average over boxes of the IoU with their best anchor: how well the anchors fit."""
    return float(wh_iou(np.asarray(wh, np.float64), np.asarray(anchors, np.float64)).max(1).mean())


def main(argv: list[str] | None = None) -> int:
    """Sample the mix, cluster the line sizes and print a darknet `anchors =` line."""
    ap = argparse.ArgumentParser(prog="python -m textwatch.train.anchors", description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=2000, help="samples to draw from the mix")
    ap.add_argument("--k", type=int, default=9, help="number of anchors (3 heads x 3)")
    ap.add_argument("--size", type=int, nargs=2, default=(416, 416), metavar=("W", "H"), help="network input size")
    ap.add_argument("--config", type=Path, default=Path("config/train.toml"), help="train.toml with a [data] table")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    w, h = args.size
    source = build_source(data_table(args.config), w, h, shared_train_root())
    wh = collect_box_sizes(source, np.random.default_rng(args.seed), args.samples, w, h)
    anchors = kmeans_anchors(wh, args.k, args.seed)
    print(f"# {len(wh)} line boxes from {args.samples} samples at {w}x{h}; mean best IoU {mean_best_iou(wh, anchors):.3f}")
    print("anchors = " + ", ".join(f"{int(round(a))}" for a in anchors.reshape(-1)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
