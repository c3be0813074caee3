"""Post-processing of candidate boxes: NMS, line-fragment merging, reading order.

Why more than NMS: tiles cut lines at their borders, and a detector sees small
text as several overlapping pieces (the seed's Drawback 2). IoU-based NMS keeps
both a fragment and the whole line when their IoU is low, so after NMS we unite
boxes that lie on the same line and overlap horizontally (never into a box two
lines tall), drop a box that holds two or more other lines (a paragraph
guess: Tesseract reads crops as one line), and absorb a box lying inside
another.

Boxes here are float arrays of rows [x1, y1, x2, y2, score] in frame pixels.
"""

from __future__ import annotations

import cv2
import numpy as np

from textwatch.detect.geometry import Box

SAME_LINE_OVERLAP = 0.6  # vertical overlap / smaller height to call two boxes one line
SAME_LINE_HEIGHT_RATIO = 1.6  # taller / shorter height still considered one line
FRAGMENT_OVERLAP = 0.3  # shared width / narrower width above which boxes are fragments of one text
FRAGMENT_HEIGHT_RATIO = 2.0  # taller / shorter beyond which overlapping boxes are not one text
UNION_GROWTH = 1.3  # a same-line union may be at most this much taller than the taller box
CONTAINED = 0.8  # intersection / smaller area above which the weaker box goes


def nms(boxes: np.ndarray, iou: float) -> np.ndarray:
    """Greedy non-maximum suppression; returns the kept rows, strongest first."""
    if len(boxes) == 0:
        return boxes.reshape(0, 5)
    xywh = np.stack([boxes[:, 0], boxes[:, 1], boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], 1)
    keep = cv2.dnn.NMSBoxes(xywh.tolist(), boxes[:, 4].tolist(), 0.0, iou)
    keep = np.array(keep, dtype=int).reshape(-1)
    kept = boxes[keep]
    return kept[np.argsort(-kept[:, 4])]


def same_line(a: np.ndarray, b: np.ndarray) -> bool:
    """Two boxes on one text line that touch or overlap horizontally (same_line_with, for one pair)."""
    return bool(same_line_with(a, b.reshape(1, -1))[0])


def same_line_with(a: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Which rows of `others` lie on one text line with box `a` and touch or overlap it horizontally.

    Heights may differ by SAME_LINE_HEIGHT_RATIO for boxes that merely touch; boxes
    that share a good part of their width (FRAGMENT_OVERLAP of the narrower one) are
    two guesses at the same text up to FRAGMENT_HEIGHT_RATIO. Either way the union may
    not grow much taller than the taller box: that would be two lines, not one.
    Vectorised over `others`: on a form page the pairwise tests were a third of the
    detector's time (issue 15's speed bound).
    """
    ha, hb = a[3] - a[1], others[:, 3] - others[:, 1]
    low, high = np.minimum(ha, hb), np.maximum(ha, hb)
    vertical = np.minimum(a[3], others[:, 3]) - np.maximum(a[1], others[:, 1])
    horizontal = np.minimum(a[2], others[:, 2]) - np.maximum(a[0], others[:, 0])
    union_height = np.maximum(a[3], others[:, 3]) - np.minimum(a[1], others[:, 1])
    narrower = np.minimum(a[2] - a[0], others[:, 2] - others[:, 0])
    with np.errstate(divide="ignore", invalid="ignore"):
        overlap, ratio = vertical / low, high / low
    one_line = (low > 0) & (overlap >= SAME_LINE_OVERLAP) & (horizontal >= 0) & (union_height <= UNION_GROWTH * high)
    one_line &= ratio <= FRAGMENT_HEIGHT_RATIO  # a box twice as tall is a block over this text, not a piece of it
    return one_line & ((ratio <= SAME_LINE_HEIGHT_RATIO) | (horizontal >= FRAGMENT_OVERLAP * narrower))


def contained(inner: np.ndarray, outer: np.ndarray) -> bool:
    """`inner` lies (almost) entirely inside `outer`."""
    return bool(contained_in(inner.reshape(1, -1), outer.reshape(1, -1))[0, 0])


def contained_in(inner: np.ndarray, outer: np.ndarray) -> np.ndarray:
    """[i, j]: row i of `inner` lies (almost) entirely inside row j of `outer`."""
    iw = np.minimum(inner[:, None, 2], outer[None, :, 2]) - np.maximum(inner[:, None, 0], outer[None, :, 0])
    ih = np.minimum(inner[:, None, 3], outer[None, :, 3]) - np.maximum(inner[:, None, 1], outer[None, :, 1])
    area = ((inner[:, 2] - inner[:, 0]) * (inner[:, 3] - inner[:, 1]))[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        share = iw * ih / area
    return (iw > 0) & (ih > 0) & (area > 0) & (share >= CONTAINED)


def merge_line_fragments(boxes: np.ndarray) -> np.ndarray:
    """Lines from candidate boxes: unite fragments of a line, drop block guesses, absorb duplicates."""
    lines = unite_same_line(boxes)
    lines = drop_blocks(lines)
    return absorb_contained(lines)


def unite_same_line(boxes: np.ndarray) -> np.ndarray:
    """Union boxes on one line that overlap (tiles cut lines; small text comes in pieces).

    Strongest first, each box takes every pending box on its line, then looks again with
    its grown extent (a union can reach boxes it did not touch before)."""
    pending = boxes[np.argsort(-boxes[:, 4])] if len(boxes) else boxes.reshape(0, 5)
    result = []
    while len(pending):
        current, pending = pending[0].copy(), pending[1:]
        while len(pending):
            taken = same_line_with(current, pending)
            if not taken.any():
                break
            current = _union_all(np.vstack([current, pending[taken]]))
            pending = pending[~taken]
        result.append(current)
    return np.array(result, dtype=boxes.dtype).reshape(-1, 5)


def drop_blocks(lines: np.ndarray) -> np.ndarray:
    """A box holding boxes on two or more rows is a paragraph guess, not a line: drop it.

    Boxes side by side on one row inside it are pieces of one line, and it stays (to absorb
    them): a whole-frame guess at a large line holds the pieces its tiles cut, and counting
    those pieces as lines dropped the whole line (regression, issue 15: the seed's "Align
    Text" read as "Align" and "TexT" with fitted tiles)."""
    inside = contained_in(lines, lines)
    np.fill_diagonal(inside, False)
    holds = inside.T.astype(np.int32)  # [j, i]: box j holds box i
    apart = (~on_one_row(lines)).astype(np.int32)
    blocks = ((holds @ apart) * holds).any(axis=1)  # j holds some i and some k on another row than i
    return lines[~blocks]


def on_one_row(boxes: np.ndarray) -> np.ndarray:
    """[i, k]: boxes i and k share SAME_LINE_OVERLAP of the lower one's height, so one row holds both."""
    top = np.maximum(boxes[:, None, 1], boxes[None, :, 1])
    bottom = np.minimum(boxes[:, None, 3], boxes[None, :, 3])
    heights = boxes[:, 3] - boxes[:, 1]
    low = np.minimum(heights[:, None], heights[None, :])
    with np.errstate(divide="ignore", invalid="ignore"):
        return (low > 0) & ((bottom - top) / low >= SAME_LINE_OVERLAP)


def absorb_contained(lines: np.ndarray) -> np.ndarray:
    """A box inside another is a second guess at the same text: keep the union.

    After drop_blocks no box holds two lines, so the container is one line's guess
    (or one line plus a sliver); reading the inner box too would print the text twice.
    """
    result = np.zeros((0, 5), np.float32)
    for box in lines[np.argsort(-lines[:, 4], kind="stable")]:
        row = box.reshape(1, -1)
        touching = np.flatnonzero(contained_in(row, result)[0] | contained_in(result, row)[:, 0])
        if len(touching):
            result[touching[0]] = _union_all(np.vstack([result[touching[0]], box]))
        else:
            result = np.vstack([result, row]).astype(np.float32)
    return result


def _union_all(rows: np.ndarray) -> np.ndarray:
    """One box around all rows, with the best score."""
    return np.concatenate([rows[:, :2].min(axis=0), rows[:, 2:4].max(axis=0), rows[:, 4:5].max(axis=0)])


def reading_order(boxes: list[Box]) -> list[int]:
    """Indices of boxes top to bottom, then left to right within a line.

    A box joins the current line when its vertical centre lies within the line's
    vertical span; lines are ordered by their top.
    """
    order = sorted(range(len(boxes)), key=lambda i: (boxes[i][1], boxes[i][0]))
    lines: list[list[int]] = []
    for index in order:
        x1, y1, x2, y2 = boxes[index]
        centre = (y1 + y2) / 2
        if lines:
            top = min(boxes[i][1] for i in lines[-1])
            bottom = max(boxes[i][3] for i in lines[-1])
            if top <= centre <= bottom:
                lines[-1].append(index)
                continue
        lines.append([index])
    return [i for line in lines for i in sorted(line, key=lambda j: boxes[j][0])]
