"""Line geometry on the frame: one text row per box, box ends on the ink.

A YOLOv4 box is a guess at a line's extent from a 416 px view of the frame:
its ends are its least certain part (a start cut off: "ag room B"), two rows
of a page can come out as one box, and a window border beside a line becomes
a "letter" at its end. These functions look at the frame's pixels inside and
around each box, after the detector and before padding:

* `split_rows`: a box holding two or more text rows is cut by the
  horizontal projection of its ink (`split_lines`, also used by the PP-OCR
  recognizer on a crop it reads unsure);
* `refine_ends`: each row's left and right ends move out to where its ink
  ends, looking up to `REACH` line heights beyond the box, and move in only
  past a rule the box took in (a border, never onto faint ink); gaps narrower than
  `MAX_GAP` line heights (word spaces) join ink into one line, wider ones
  end it, and so do vertical rules (strokes that run on above and below the
  row: window frames, table rules) and anything with ink just above and
  just below the row (a plate's frame, the car around it).

Both only ever act on clear evidence: a band without a clear background
(textured scenes, where Otsu's threshold finds no text/background split) is
left as the detector gave it.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import numpy.typing as npt

from textwatch.detect.geometry import Box

REACH = 1.5  # how far beyond a box's end its line may continue, in line heights
MAX_GAP = 0.9  # an empty run of columns this wide (line heights) ends a line; word spaces are ~0.3-0.6
ROUNDS = 4  # a line may be followed this many REACHes beyond the detector's box
SHRINK = 1.0  # the most an end may move inwards past a border the detector took in, in line heights
RULE_REACH = 0.4  # a stroke that runs this far (line heights) above and below the row is a rule, not a glyph
CROSS_STRIP = 0.25  # the strips above and below a row looked at for strokes crossing it (line heights)
SOLID_FILL = 0.8  # ... "full": at least this share of the row's middle rows is ink
SOLID = 0.35  # a run of full-height "ink" columns wider than this (line heights) is a surface, not text
MIN_BACKGROUND = 0.15  # a band needs at least this share of empty columns to be refined at all
CORE = 0.2  # the top and bottom share of a row left out of its column profile (neighbours' ascenders)
MAX_SLANT_DEG = 4.0  # rows tilted up to this much (a receipt photographed askew) are split along their slant
SLANT_STEP_DEG = 0.5  # the slants tried, from -MAX_SLANT_DEG to +MAX_SLANT_DEG
EVEN_ROWS = 0.5  # slanted rows are one font: a "row" lower than this share of the tallest is no row


def ink_mask(gray: npt.NDArray[np.uint8]) -> npt.NDArray[np.bool_]:
    """Ink pixels of a grey image by its own Otsu threshold and polarity (`ink_rule`)."""
    return ink_by(gray, ink_rule(gray))


def ink_by(gray: npt.NDArray[np.uint8], rule: tuple[float, bool]) -> npt.NDArray[np.bool_]:
    """Ink pixels of `gray` by another image's (threshold, ink is dark) rule."""
    threshold, ink_is_dark = rule
    return gray <= threshold if ink_is_dark else gray > threshold


def ink_rule(gray: npt.NDArray[np.uint8]) -> tuple[float, bool]:
    """(Otsu's threshold, whether ink is the dark class) of a grey image. Polarity: ink is the
    class *not* held by the majority of the 1-px border; on a border split 40-60 %, ink is the
    minority class of the image (light text on dark and dark on light both work)."""
    threshold, binary = cv2.threshold(gray, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    light: npt.NDArray[np.bool_] = np.asarray(binary, dtype=bool)
    border = np.concatenate([light[0, :], light[-1, :], light[:, 0], light[:, -1]])
    light_border = float(border.mean())
    ink_is_dark = bool(light.mean() >= 0.5) if 0.4 <= light_border <= 0.6 else light_border > 0.5
    return float(threshold), ink_is_dark


def gray_of(frame: np.ndarray) -> npt.NDArray[np.uint8]:
    return cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame


def split_rows(gray: npt.NDArray[np.uint8], box: Box) -> list[Box]:
    """A box holding several text rows as one box per row (split_lines' rule on its pixels, then
    along a slant); a one-row box comes back as it is. The box's ink is thresholded once for
    both: this runs for every box of a frame."""
    x1, y1, x2, y2 = box
    h, w = y2 - y1, x2 - x1
    if h < 8 or w < 4:
        return [box]
    ink = ink_mask(gray[y1:y2, x1:x2])
    bands = profile_bands(ink.sum(axis=1), w)
    if len(bands) < 2:
        return slanted_rows(ink, box)
    rows = padded_rows(bands, h)
    return [(x1, y1 + a + top, x2, y1 + a + bottom) for a, b in rows for top, bottom in [_inked(gray[y1 + a : y1 + b, x1:x2])]]


def slanted_rows(ink: npt.NDArray[np.bool_], box: Box) -> list[Box]:
    """A box whose rows run at a slant, as one box per row (the bounding box of each row's ink);
    a one-row box comes back as it is.

    On a receipt or form photographed a few degrees askew, each row's ink spills into the
    straight projection's gaps, so `split_lines` sees one band and a box over two or three rows
    went to the recognizer whole, which reads one of them (SROIE: whole header blocks lost).
    The ink is projected along each slant up to MAX_SLANT_DEG; the sharpest profile (the
    largest sum of squares: rows stacked on rows, gaps empty) is the rows' slant, and its
    bands are cut by the same rules as split_lines'. A straight best slant means one row.
    `ink` is the box's ink mask."""
    x1, y1 = box[0], box[1]
    ys, xs = np.nonzero(ink)
    h, w = ink.shape
    if len(ys) < 2 * h:
        return [box]
    slant = _sharpest_slant(ys, xs, w)
    if slant is None:
        return [box]
    shifted, profile = slant
    bands = profile_bands(profile, w)
    if len(bands) < 2:
        return [box]
    cuts = [(upper[1] + lower[0]) // 2 for upper, lower in zip(bands, bands[1:])]
    row_of = np.searchsorted(np.asarray(cuts), shifted, side="right")
    rows = []
    for row in range(len(bands)):
        mine = row_of == row
        if mine.any():
            rx, ry = xs[mine], ys[mine]
            rows.append((x1 + int(rx.min()), y1 + int(ry.min()), x1 + int(rx.max()) + 1, y1 + int(ry.max()) + 1))
    tallest = max((row[3] - row[1] for row in rows), default=0)
    rows = [row for row in rows if row[3] - row[1] >= EVEN_ROWS * tallest]  # a sliver is an edge or a stroke
    return rows if len(rows) > 1 else [box]


def _sharpest_slant(
    ys: npt.NDArray[np.intp], xs: npt.NDArray[np.intp], w: int
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]] | None:
    """(each ink pixel's row along the sharpest slant, that slant's profile); None when the
    straight projection is the sharpest. All slants in one bincount: this runs for nearly every
    box of a frame (issue 15's speed bound)."""
    steps = int(round(MAX_SLANT_DEG / SLANT_STEP_DEG))
    slopes = np.tan(np.radians(np.arange(-steps, steps + 1) * SLANT_STEP_DEG))
    shifted = np.rint(ys[None, :] - (xs[None, :] - w / 2) * slopes[:, None]).astype(np.intp)
    shifted -= shifted.min(axis=1, keepdims=True)
    length = int(shifted.max()) + 1
    profiles = np.bincount((shifted + length * np.arange(len(slopes))[:, None]).ravel(), minlength=length * len(slopes))
    profiles = profiles.reshape(len(slopes), length)
    scores = np.square(profiles, dtype=np.float64).sum(axis=1)
    best = int(np.argmax(scores))
    if best == steps or scores[best] <= scores[steps]:
        return None
    return shifted[best], profiles[best][: int(shifted[best].max()) + 1]


def _inked(part: npt.NDArray[np.uint8]) -> tuple[int, int]:
    """(first, last + 1) row of a row band holding any ink: the band less split_lines' padding,
    with the descenders and accents the padding was there to keep."""
    rows = np.flatnonzero(ink_mask(part).any(axis=1))
    return (int(rows[0]), int(rows[-1]) + 1) if len(rows) else (0, part.shape[0])


def refine_ends(gray: npt.NDArray[np.uint8], box: Box) -> Box:
    """The box with its left and right ends on its line's ink (the module docstring's rule); a line
    that runs on past REACH is followed up to ROUNDS times as far."""
    for _ in range(ROUNDS):
        moved = refine_once(gray, box)
        if moved == box:
            break
        box = moved
    return box


def refine_once(gray: npt.NDArray[np.uint8], box: Box) -> Box:
    """One look up to REACH line heights beyond each end of the box."""
    x1, y1, x2, y2 = box
    h = y2 - y1
    if h < 6 or x2 - x1 < 2:
        return box
    reach = math.ceil(REACH * h)
    bx1, bx2 = max(0, x1 - reach), min(gray.shape[1], x2 + reach)
    # Threshold and polarity from the box itself (its text on its own background), applied
    # to the band around it: light text on a dark plate on a light page stays light text.
    rule = ink_rule(gray[y1:y2, x1:x2])
    ink = ink_by(gray[y1:y2, bx1:bx2], rule)
    core = ink[int(CORE * h) : h - int(CORE * h)]
    columns = core.any(axis=0)
    if 1.0 - float(columns.mean()) < MIN_BACKGROUND:
        return box  # no clear background: nothing to measure the ends against
    borders = vertical_rules(gray, (bx1, y1, bx2, y2), ink, rule)
    rules = borders | solid_runs(core, h) | crossing(gray, (bx1, y1, bx2, y2), rule)
    columns &= ~rules
    left, right = _ink_extent(columns, rules, x1 - bx1, x2 - bx1, h)
    if left is None or right is None:
        return box
    start, end = bx1 + left, bx1 + right
    new_x1 = max(start, x1 - reach) if start < x1 else _inwards(x1, start, borders[x1 - bx1 : left], h)
    new_x2 = min(end, x2 + reach) if end > x2 else _inwards(x2, end, borders[right : x2 - bx1], h)
    return (new_x1, y1, new_x2, y2) if new_x2 - new_x1 >= 2 else box


def _inwards(edge: int, ink_end: int, between: npt.NDArray[np.bool_], h: int) -> int:
    """Where a box end whose ink ends inside the box goes: onto the ink when a border (a stroke
    running on above and below the row: a window frame, a table rule) lies between the two, by at
    most SHRINK line heights; otherwise it stays.

    Regression (issue 15): every end moved onto its ink, and license plates lost 6 of 50 (recall
    0.760 -> 0.640): characters at a plate's ends fell outside the ink threshold and were cut.
    Cutting past any rule (a plate's own frame, the car around it) still lost 5 (0.660); only a
    long border is evidence enough to cut a line. Growing finds a line's lost start.
    """
    if not between.any():
        return edge
    shrink = int(SHRINK * h)
    return min(ink_end, edge + shrink) if ink_end > edge else max(ink_end, edge - shrink)


def vertical_rules(
    gray: npt.NDArray[np.uint8], band: Box, ink: npt.NDArray[np.bool_], rule: tuple[float, bool]
) -> npt.NDArray[np.bool_]:
    """Columns of the band holding a stroke through the whole row that also runs on RULE_REACH
    line heights above and below it: a frame, a table rule, a separator; never a glyph."""
    bx1, y1, bx2, y2 = band
    h = y2 - y1
    through = ink.mean(axis=0) >= 0.9
    if not through.any():
        return through
    ext = math.ceil(RULE_REACH * h)
    top, bottom = max(0, y1 - ext), min(gray.shape[0], y2 + ext)
    if y1 - top < ext or bottom - y2 < ext:
        return np.zeros_like(through)  # at the frame's edge: cannot tell
    tall = ink_by(gray[top:bottom, bx1:bx2], rule)
    above = tall[: y1 - top].mean(axis=0) >= 0.9
    below = tall[y2 - top :].mean(axis=0) >= 0.9
    return through & above & below


def crossing(gray: npt.NDArray[np.uint8], band: Box, rule: tuple[float, bool]) -> npt.NDArray[np.bool_]:
    """Columns with ink in the strips just above *and* just below the row (CROSS_STRIP line
    heights each): something that crosses the row, such as a plate's frame or the car around
    it, a table's cell border or a photo's edge; a glyph has an ascender or a descender, not
    both, and neighbouring lines keep a gap."""
    bx1, y1, bx2, y2 = band
    strip = max(1, math.ceil(CROSS_STRIP * (y2 - y1)))
    if y1 - strip < 0 or y2 + strip > gray.shape[0]:
        return np.zeros(bx2 - bx1, dtype=bool)  # at the frame's edge: cannot tell
    above, below = ink_by(gray[y1 - strip : y1, bx1:bx2], rule), ink_by(gray[y2 : y2 + strip, bx1:bx2], rule)
    return above.any(axis=0) & below.any(axis=0)


def solid_runs(ink: npt.NDArray[np.bool_], h: int) -> npt.NDArray[np.bool_]:
    """Columns inside runs of "ink" filling the row's middle (SOLID_FILL) wider than SOLID x h: no glyph
    is that wide and solid, so it is a surface of the text's colour (the page around a dark
    subtitle plate, a filled bar), which ends the line like a rule."""
    full = ink.mean(axis=0) >= SOLID_FILL
    out = np.zeros_like(full)
    for start, stop in _runs(full):
        if stop - start > SOLID * h:
            out[start:stop] = True
    return out


def _runs(flags: npt.NDArray[np.bool_]) -> npt.NDArray[np.intp]:
    """[start, stop) of each run of True in a 1-d mask, as rows of an (n, 2) array."""
    edges = np.flatnonzero(np.diff(np.concatenate([[False], flags, [False]]).astype(np.int8)))
    return edges.reshape(-1, 2)


def _ink_extent(
    columns: npt.NDArray[np.bool_], rules: npt.NDArray[np.bool_], x1: int, x2: int, h: int
) -> tuple[int | None, int | None]:
    """(first, last + 1) column of the ink clusters that overlap [x1, x2): runs of ink joined
    across gaps narrower than MAX_GAP x h, never across a rule. (Vectorised: a box's band is
    hundreds of columns, and a Python loop over them was a fifth of a form page's detect.)"""
    ink = np.flatnonzero(columns & ~rules)
    if not len(ink):
        return None, None
    rules_before = np.cumsum(rules)[ink]  # rule columns up to each ink column
    starts = np.ones(len(ink), dtype=bool)
    starts[1:] = (np.diff(ink) > MAX_GAP * h) | (np.diff(rules_before) > 0)
    first = np.flatnonzero(starts)
    begin, end = ink[first], ink[np.append(first[1:] - 1, len(ink) - 1)] + 1
    kept = np.minimum(end, x2) - np.maximum(begin, x1) > 0
    if not kept.any():
        return None, None
    return int(begin[kept].min()), int(end[kept].max())


def split_lines(
    gray_crop: npt.NDArray[np.uint8],
    *,
    gap_ratio: float = 0.05,
    thin_ratio: float = 0.3,
    pad_ratio: float = 0.25,
    min_line_aspect: float = 2.0,
) -> list[tuple[int, int]]:
    """Split a crop holding stacked text lines into row ranges ``[(y1, y2), ...]``.

    Takes a grey (or BGR) uint8 crop.  ``y2`` is exclusive.  A crop judged
    to hold one line yields
    ``[(0, height)]``, so callers can always loop over the result.

    Rule (horizontal projection profile of ink):

    1. Binarise with Otsu.  Polarity: ink is the class *not* held by the
       majority of the 1-px border; if the border is split 40-60 %, ink is the
       minority class of the whole crop.
    2. ``profile[y]`` = ink pixels in row ``y``.  A row is empty when
       ``profile[y] <= gap_ratio * max(profile)``; bands are maximal runs of
       non-empty rows.
    3. Bands thinner than ``thin_ratio`` times the *tallest* band (i-dots,
       accents, underlines, plate-frame edges, cut-off neighbours, noise) are
       merged into the nearer neighbouring band (smaller gap; the upper one
       on a tie), one at a time, thinnest first, until none is left.  The
       tallest band is the reference rather than the median because with two
       bands the median is their mean: a 4-px frame edge above a 22-px line
       is 31 % of that mean and would survive as a "line".
    4. Fewer than two bands left: one line, ``[(0, height)]``.
    5. Vertical-word guard: if the median band height exceeds
       ``width / min_line_aspect``, the "lines" are too narrow to be text
       lines (they are the letters of a word written top-to-bottom, or a
       rotated word): one line, ``[(0, height)]``.
    6. Each band is padded by ``pad_ratio`` of its height on both sides,
       clipped to the crop and to the middle of the gap to its neighbours,
       so neighbouring ranges never overlap.

    Why a projection profile and not a detector: crops come from a detector
    or a fixed ROI already; the failure to fix is two lines in one box, and
    lines there are horizontal, so a profile is cheap and sufficient.
    """
    gray = cv2.cvtColor(gray_crop, cv2.COLOR_BGR2GRAY) if gray_crop.ndim == 3 else gray_crop
    h, w = gray.shape[:2]
    whole = [(0, h)]
    if h < 8 or w < 4:
        return whole

    bands = profile_bands(
        ink_mask(gray).sum(axis=1), w, gap_ratio=gap_ratio, thin_ratio=thin_ratio, min_line_aspect=min_line_aspect
    )
    return padded_rows(bands, h, pad_ratio)


def padded_rows(bands: list[list[int]], h: int, pad_ratio: float = 0.25) -> list[tuple[int, int]]:
    """split_lines' step 6 on a crop `h` rows tall: each band padded, never into its neighbours;
    fewer than two bands is the whole crop."""
    if len(bands) < 2:
        return [(0, h)]
    out: list[tuple[int, int]] = []
    for k, (a, b) in enumerate(bands):
        pad = round(pad_ratio * (b - a))
        top = 0 if k == 0 else (bands[k - 1][1] + a) // 2
        bottom = h if k == len(bands) - 1 else (b + bands[k + 1][0]) // 2
        out.append((max(top, a - pad), min(bottom, b + pad)))
    return out


def profile_bands(
    profile: npt.NDArray[np.intp],
    width: int,
    *,
    gap_ratio: float = 0.05,
    thin_ratio: float = 0.3,
    min_line_aspect: float = 2.0,
) -> list[list[int]]:
    """The text rows [top, bottom) of a horizontal ink profile by split_lines' steps 2-5; fewer
    than two when the profile holds one row."""
    if profile.max() == 0:
        return []
    rows = profile > gap_ratio * profile.max()
    bands: list[list[int]] = []
    for y, on in enumerate(rows):
        if on and bands and bands[-1][1] == y:
            bands[-1][1] = y + 1
        elif on:
            bands.append([y, y + 1])

    while len(bands) > 1:
        heights = [b - a for a, b in bands]
        tallest = max(heights)
        thin = [i for i, hh in enumerate(heights) if hh < thin_ratio * tallest]
        if not thin:
            break
        i = min(thin, key=lambda k: heights[k])
        gap_up = bands[i][0] - bands[i - 1][1] if i > 0 else math.inf
        gap_down = bands[i + 1][0] - bands[i][1] if i + 1 < len(bands) else math.inf
        j = i - 1 if gap_up <= gap_down else i + 1
        lo, hi = min(i, j), max(i, j)
        bands[lo] = [bands[lo][0], bands[hi][1]]
        del bands[hi]

    if len(bands) < 2 or float(np.median([b - a for a, b in bands])) * min_line_aspect > width:
        return bands[:1]
    return bands
