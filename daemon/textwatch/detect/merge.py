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
    """Two boxes on one text line that touch or overlap horizontally.

    Heights may differ by SAME_LINE_HEIGHT_RATIO for boxes that merely touch; boxes
    that share a good part of their width (FRAGMENT_OVERLAP of the narrower one) are
    two guesses at the same text up to FRAGMENT_HEIGHT_RATIO. Either way the union may
    not grow much taller than the taller box: that would be two lines, not one.
    """
    ha, hb = a[3] - a[1], b[3] - b[1]
    low, high = min(ha, hb), max(ha, hb)
    if low <= 0:
        return False
    vertical = min(a[3], b[3]) - max(a[1], b[1])
    horizontal = min(a[2], b[2]) - max(a[0], b[0])
    union_height = max(a[3], b[3]) - min(a[1], b[1])
    if vertical / low < SAME_LINE_OVERLAP or horizontal < 0 or union_height > UNION_GROWTH * high:
        return False
    if high / low > FRAGMENT_HEIGHT_RATIO:  # a box twice as tall is a block over this text, not a piece of it
        return False
    narrower = min(a[2] - a[0], b[2] - b[0])
    return high / low <= SAME_LINE_HEIGHT_RATIO or horizontal >= FRAGMENT_OVERLAP * narrower


def contained(inner: np.ndarray, outer: np.ndarray) -> bool:
    """`inner` lies (almost) entirely inside `outer`."""
    iw = min(inner[2], outer[2]) - max(inner[0], outer[0])
    ih = min(inner[3], outer[3]) - max(inner[1], outer[1])
    area = (inner[2] - inner[0]) * (inner[3] - inner[1])
    return iw > 0 and ih > 0 and area > 0 and iw * ih / area >= CONTAINED


def merge_line_fragments(boxes: np.ndarray) -> np.ndarray:
    """Lines from candidate boxes: unite fragments of a line, drop block guesses, absorb duplicates."""
    lines = unite_same_line(boxes)
    lines = drop_blocks(lines)
    return absorb_contained(lines)


def unite_same_line(boxes: np.ndarray) -> list[np.ndarray]:
    """Union boxes on one line that overlap (tiles cut lines; small text comes in pieces)."""
    pending = [row.copy() for row in boxes[np.argsort(-boxes[:, 4])]] if len(boxes) else []
    result: list[np.ndarray] = []
    while pending:
        current = pending.pop(0)
        changed = True
        while changed:  # a union can reach boxes it did not touch before
            changed = False
            for other in [p for p in pending if same_line(current, p)]:
                current = _union(current, other)
                pending = [p for p in pending if p is not other]
                changed = True
        result.append(current)
    return result


def drop_blocks(lines: list[np.ndarray]) -> list[np.ndarray]:
    """A box holding two or more other lines is a paragraph guess, not a line: drop it."""
    return [
        box for box in lines
        if sum(contained(other, box) for other in lines if other is not box) < 2
    ]


def absorb_contained(lines: list[np.ndarray]) -> np.ndarray:
    """A box inside another is a second guess at the same text: keep the union.

    After drop_blocks no box holds two lines, so the container is one line's guess
    (or one line plus a sliver); reading the inner box too would print the text twice.
    """
    result: list[np.ndarray] = []
    for box in sorted(lines, key=lambda b: -b[4]):
        for index, kept in enumerate(result):
            if contained(box, kept) or contained(kept, box):
                result[index] = _union(kept, box)
                break
        else:
            result.append(box)
    return np.array(result, dtype=np.float32).reshape(-1, 5)


def _union(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.array([min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]), max(a[4], b[4])])


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
