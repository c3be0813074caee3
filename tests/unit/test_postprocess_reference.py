"""The vectorised post-processing (detect/merge.py, detect/lines.py) gives exactly what the plain
per-box loops it replaced gave (issue 15's speed bound: those loops were a third of a form page's
detect). The loops are kept here as the reference, on random boxes with ties, duplicates and
nested boxes, and on random column masks."""

from __future__ import annotations

import numpy as np

from textwatch.detect import lines, merge

# ---------------------------------------------------------------- the reference loops (before issue 15's speed-up)


def ref_same_line(a: np.ndarray, b: np.ndarray) -> bool:
    ha, hb = a[3] - a[1], b[3] - b[1]
    low, high = min(ha, hb), max(ha, hb)
    if low <= 0:
        return False
    vertical = min(a[3], b[3]) - max(a[1], b[1])
    horizontal = min(a[2], b[2]) - max(a[0], b[0])
    union_height = max(a[3], b[3]) - min(a[1], b[1])
    if vertical / low < merge.SAME_LINE_OVERLAP or horizontal < 0 or union_height > merge.UNION_GROWTH * high:
        return False
    if high / low > merge.FRAGMENT_HEIGHT_RATIO:
        return False
    narrower = min(a[2] - a[0], b[2] - b[0])
    return high / low <= merge.SAME_LINE_HEIGHT_RATIO or horizontal >= merge.FRAGMENT_OVERLAP * narrower


def ref_contained(inner: np.ndarray, outer: np.ndarray) -> bool:
    iw = min(inner[2], outer[2]) - max(inner[0], outer[0])
    ih = min(inner[3], outer[3]) - max(inner[1], outer[1])
    area = (inner[2] - inner[0]) * (inner[3] - inner[1])
    return iw > 0 and ih > 0 and area > 0 and iw * ih / area >= merge.CONTAINED


def ref_union(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.array([min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]), max(a[4], b[4])])


def ref_merge_line_fragments(boxes: np.ndarray) -> np.ndarray:
    pending = [row.copy() for row in boxes[np.argsort(-boxes[:, 4])]] if len(boxes) else []
    united: list[np.ndarray] = []
    while pending:
        current = pending.pop(0)
        changed = True
        while changed:
            changed = False
            for other in [p for p in pending if ref_same_line(current, p)]:
                current = ref_union(current, other)
                pending = [p for p in pending if p is not other]
                changed = True
        united.append(current)
    kept = [box for box in united if not ref_holds_two_rows(box, [o for o in united if o is not box])]
    result: list[np.ndarray] = []
    for box in sorted(kept, key=lambda b: -b[4]):
        for index, old in enumerate(result):
            if ref_contained(box, old) or ref_contained(old, box):
                result[index] = ref_union(old, box)
                break
        else:
            result.append(box)
    return np.array(result, dtype=np.float32).reshape(-1, 5)


def ref_holds_two_rows(box: np.ndarray, others: list[np.ndarray]) -> bool:
    """Issue 15's block rule: the boxes inside `box` lie on two rows (pieces side by side are one)."""
    held = [o for o in others if ref_contained(o, box)]
    for i, a in enumerate(held):
        for b in held[i + 1 :]:
            low = min(a[3] - a[1], b[3] - b[1])
            if low <= 0 or (min(a[3], b[3]) - max(a[1], b[1])) / low < merge.SAME_LINE_OVERLAP:
                return True
    return False


def ref_ink_extent(columns, rules, x1, x2, h):
    clusters: list[list[int]] = []
    last_ink = None
    for x in np.flatnonzero(columns | rules):
        if rules[x]:
            last_ink = None
            continue
        if last_ink is not None and x - last_ink <= lines.MAX_GAP * h and clusters:
            clusters[-1][1] = int(x) + 1
        else:
            clusters.append([int(x), int(x) + 1])
        last_ink = int(x)
    kept = [c for c in clusters if min(c[1], x2) - max(c[0], x1) > 0]
    if not kept:
        return None, None
    return min(c[0] for c in kept), max(c[1] for c in kept)


def ref_solid_runs(ink: np.ndarray, h: int) -> np.ndarray:
    full = ink.mean(axis=0) >= lines.SOLID_FILL
    out = np.zeros_like(full)
    start = None
    for x, on in enumerate([*full.tolist(), False]):
        if on and start is None:
            start = x
        elif not on and start is not None:
            if x - start > lines.SOLID * h:
                out[start:x] = True
            start = None
    return out


# ---------------------------------------------------------------- the comparisons


def random_boxes(rng: np.random.Generator, trial: int) -> np.ndarray:
    """Lines of text-like boxes with tied scores; every third set with duplicates and nested boxes."""
    n = int(rng.integers(0, 40))
    x1, y1 = rng.uniform(0, 500, n), rng.uniform(0, 300, n).round(int(rng.integers(0, 2)))
    width, height = rng.uniform(1, 200, n), rng.choice([10, 12, 20, 30], n) * rng.uniform(0.5, 2.2, n)
    boxes = np.stack([x1, y1, x1 + width, y1 + height, rng.choice([0.3, 0.5, 0.7, 0.9], n)], 1).astype(np.float32)
    if trial % 3 == 0 and n:
        boxes = np.vstack([boxes, boxes[: n // 2], boxes[: n // 3] + np.float32([2, 1, -2, -1, 0])]).astype(np.float32)
    return boxes


def test_merge_line_fragments_equals_the_reference_loops() -> None:
    rng = np.random.default_rng(15)
    for trial in range(600):
        boxes = random_boxes(rng, trial)
        expected, got = ref_merge_line_fragments(boxes), merge.merge_line_fragments(boxes)
        assert got.dtype == np.float32 and got.shape == expected.shape and np.array_equal(got, expected), trial


def test_pairwise_tests_equal_the_reference() -> None:
    rng = np.random.default_rng(16)
    for trial in range(50):
        boxes = random_boxes(rng, trial)
        for a in boxes[:10]:
            assert [merge.same_line(a, b) for b in boxes] == [ref_same_line(a, b) for b in boxes]
            assert [merge.contained(a, b) for b in boxes] == [bool(ref_contained(a, b)) for b in boxes]


def test_ink_extent_and_solid_runs_equal_the_reference_loops() -> None:
    rng = np.random.default_rng(17)
    for trial in range(2000):
        n, h = int(rng.integers(1, 400)), int(rng.integers(6, 60))
        if trial % 2:
            columns, rules = (np.repeat(rng.random(n // 8 + 1) < p, 8)[:n] for p in (0.5, 0.05))
        else:
            columns, rules = rng.random(n) < rng.uniform(0, 1), rng.random(n) < rng.uniform(0, 0.1)
        columns = columns & ~rules
        x1 = int(rng.integers(0, n))
        x2 = int(rng.integers(x1, n + 1))
        assert lines._ink_extent(columns, rules, x1, x2, h) == ref_ink_extent(columns, rules, x1, x2, h), trial
        ink = rng.random((h, n)) < rng.uniform(0.3, 1)
        if trial % 3 == 0:
            ink[:, : n // 2] = True
        assert np.array_equal(lines.solid_runs(ink, h), ref_solid_runs(ink, h)), trial
