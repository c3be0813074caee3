"""Synthetic text-line scenes: the kinds of picture textwatch reads, with exact line labels.

Why synthetic: the real sets (ICDAR 2015 street words, SROIE receipts) have no
application windows, no video overlays and little tiny text, yet the seed's test
image is a word-processor window whose small toolbar labels it failed on
(Drawback 2). Rendering gives every one of those cases with perfect labels.

Label rule (the same as `realdata`): one box per rendered text *line*, hugging the
ink actually drawn (the rendered alpha mask, not the font's ascent box); an ink
gap wider than `GAP_FACTOR` x the line's ink height starts a new box, so two
toolbar labels or a receipt item and its price far right are two boxes.

Hard negatives (stripes, grids, foliage-like texture, icons, barcodes, dashed
rules) are drawn with no box, so the detector learns that text-like texture is
not text. Photo backgrounds come from regions of the ICDAR training images that
hold no annotated box (see `realdata.TextFreeCrops`); without them the
backgrounds are procedural only.

Coordinates: a scene is drawn on a canvas whose size is chosen so that, once
letterboxed to the network input, one network pixel is `Canvas.px` canvas pixels;
all sizes below are given in *network* pixels and converted with `Canvas.net`.
"""

from __future__ import annotations

import functools
import math
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

FONT_DIRS = (Path("/usr/share/fonts"), Path("/usr/local/share/fonts"))
GAP_FACTOR = 1.0  # an ink gap wider than this x the line height splits the line (same rule as realdata)
INK_THRESHOLD = 64  # alpha above this counts as ink for the tight box
MIN_CONTRAST = 40.0  # text whose luminance differs less from what is under it is labelled ignore
_SKIP_NAMES = ("symbol", "math", "music", "emoji", "dingbat", "d050000l", "cjk", "icon", "extralight")
# Noto ships one file per script; only these Noto families have Latin as their main script.
_NOTO_LATIN = ("notosans-", "notoserif-", "notosansmono-", "notomono-", "notosansdisplay-", "notoserifdisplay-")
_SERIF_KEYS = ("roman", "c059", "p052", "bookman", "caladea", "tinos", "times", "georgia")

PhotoFn = Callable[[np.random.Generator, int, int], "np.ndarray | None"]


# ---------------------------------------------------------------- fonts


@dataclass(frozen=True)
class FontInfo:
    """One font file and the style tags used to pick fonts that suit a scene."""

    path: str
    family: str
    tags: frozenset[str]


def font_tags(name: str) -> frozenset[str]:
    """Style tags (serif/sans/mono, bold, italic, condensed, display) from a font's file and family name."""
    n = name.lower()
    tags: set[str] = set()
    if "mono" in n or "inconsolata" in n or "courier" in n:
        tags.add("mono")
    elif ("serif" in n and "sans" not in n) or any(k in n for k in _SERIF_KEYS):
        tags.add("serif")
    else:
        tags.add("sans")
    if any(k in n for k in ("bold", "demi", "black", "heavy")):
        tags.add("bold")
    if "italic" in n or "oblique" in n:
        tags.add("italic")
    if "condensed" in n or "narrow" in n:
        tags.add("condensed")
    if any(k in n for k in ("display", "z003", "gothic", "hairline", "thin")):
        tags.add("display")
    return frozenset(tags)


def _mask(font: ImageFont.FreeTypeFont, text: str) -> np.ndarray:
    """Rendered alpha of `text` (uint8), used by the Latin-coverage probe."""
    left, top, right, bottom = font.getbbox(text)
    img = Image.new("L", (max(1, right - left + 4), max(1, bottom - top + 4)), 0)
    ImageDraw.Draw(img).text((2 - left, 2 - top), text, font=font, fill=255)
    return np.asarray(img)


def covers_latin(font: ImageFont.FreeTypeFont) -> bool:
    """True when 'A', 'a' and '0' render as real glyphs, not as the font's missing-glyph box."""
    missing = _mask(font, "\u0378")  # unassigned code point: always the .notdef glyph
    for ch in "Aa0":
        m = _mask(font, ch)
        if m.max() < 128 or (m.shape == missing.shape and np.array_equal(m, missing)):
            return False
    return True


def _candidate_files(dirs: Sequence[Path]) -> list[Path]:
    """Font files under `dirs` minus symbol/emoji/CJK faces and non-Latin Noto script fonts."""
    files: list[Path] = []
    for d in dirs:
        if d.is_dir():
            files += [p for p in d.rglob("*") if p.suffix.lower() in (".ttf", ".otf")]
    keep = []
    for p in sorted(files):
        low = p.name.lower()
        if any(k in low for k in _SKIP_NAMES):
            continue
        if low.startswith("noto") and not low.startswith(_NOTO_LATIN):
            continue
        keep.append(p)
    return keep


@functools.lru_cache(maxsize=4)
def discover_fonts(dirs: tuple[Path, ...] = FONT_DIRS) -> tuple[FontInfo, ...]:
    """Scan the font folders once per process and keep the fonts that render Latin text."""
    fonts = []
    for path in _candidate_files(dirs):
        try:
            font = ImageFont.truetype(str(path), 24)
        except OSError as err:  # a broken font file is skipped, but said out loud
            import logging

            logging.getLogger(__name__).warning("skipping unreadable font %s: %s", path, err)
            continue
        if not covers_latin(font):
            continue
        family, style = font.getname()
        fonts.append(FontInfo(str(path), family or path.stem, font_tags(f"{path.stem} {family} {style}")))
    if not fonts:
        raise RuntimeError(
            f"no usable .ttf/.otf fonts under {', '.join(map(str, dirs))}: "
            "install e.g. fonts-dejavu fonts-liberation fonts-noto-core"
        )
    return tuple(fonts)


@functools.lru_cache(maxsize=4096)
def load_font(path: str, size: int) -> ImageFont.FreeTypeFont:
    """A font at one pixel size, cached: opening a face per text line would dominate the sample time.

    The BASIC layout engine (no raqm shaping) is enough for our Latin text and
    renders about 1.5x faster, which is the largest single cost of a synthetic sample.
    """
    return ImageFont.truetype(path, size, layout_engine=ImageFont.Layout.BASIC)


class FontBank:
    """Fonts grouped by family, so a family with twenty files is no likelier than one with two."""

    def __init__(self, fonts: Sequence[FontInfo]) -> None:
        self.fonts = list(fonts)
        self._pools: dict[frozenset[str], tuple[list[FontInfo], np.ndarray]] = {}

    def _pool(self, want: frozenset[str]) -> tuple[list[FontInfo], np.ndarray]:
        """Fonts having every tag in `want` (all fonts if none has), with family-balanced weights."""
        if want not in self._pools:
            chosen = [f for f in self.fonts if want <= f.tags] or self.fonts
            counts: dict[str, int] = {}
            for f in chosen:
                counts[f.family] = counts.get(f.family, 0) + 1
            w = np.array([1.0 / counts[f.family] for f in chosen])
            self._pools[want] = (chosen, w / w.sum())
        return self._pools[want]

    def pick(self, rng: np.random.Generator, *styles: str) -> FontInfo:
        """A random font; `styles` lists acceptable tag sets as 'bold+sans' strings ('' = any)."""
        style = styles[int(rng.integers(len(styles)))] if styles else ""
        want = frozenset(t for t in style.split("+") if t)
        chosen, w = self._pool(want)
        return chosen[int(rng.choice(len(chosen), p=w))]

    def font(self, info: FontInfo, size_px: float) -> ImageFont.FreeTypeFont:
        """`info` at an integer pixel size of at least 6."""
        return load_font(info.path, max(6, int(round(size_px))))


# ---------------------------------------------------------------- text content

_WORDS = """the of and to in is you that it for on are with as at be this have from or one had by word but not
what all were when we there can an your which their said if do will each about how up out them then she many some
so these would other into has more her two like him see time could no make than first been its who now people my
made over did down only way find use may water long little very after words called just where most know get through
back much before go good new write our used me man too any day same right look think also around another came come
work three must because does part even place well such here take why things help put years different away again off
went old number great tell men say small every found still between name should home big give air line set own under
read last never us left end along while might next sound below saw something thought both few those always show large
often together asked house world going want school important until form food keep children feet land side without
boy once animal life enough took four head above kind began almost live page got earth need far hand high year mother
light country father let night picture being study second soon story since white ever paper hard near sentence better
best across during today however sure knew try told young sun thing whole hear example heard several change answer room
sea against top turned learn point city play toward five himself usually money seen car morning body upon family later
""".split()
_SIGN_WORDS = """OPEN CLOSED EXIT ENTRANCE PARKING PHARMACY CAFE COFFEE BAKERY SALE HOTEL BANK POLICE TAXI BUS STOP
NO SMOKING PUSH PULL TOILETS RESTAURANT BAR PIZZA SUSHI MARKET STATION PLATFORM GATE LEVEL FLOOR LIFT STAIRS ONE WAY
KEEP LEFT RIGHT DANGER CAUTION WET FLOOR DELIVERIES ONLY STAFF PRIVATE OFFICE RECEPTION CASHIER PAY HERE SPECIAL
OFFER FRESH DAILY HOURS MON FRI SAT SUN AVENUE STREET ROAD LANE PLAZA CENTRE MALL FASHION BOOKS TOYS SHOES OPTICS
DENTAL CLINIC HOSPITAL EMERGENCY TICKETS INFORMATION WELCOME THANK YOU SERVICE REPAIR GARAGE FUEL DIESEL WIFI FREE
NEW SUMMER COLLECTION DISCOUNT LIMITED""".split()
_UI_LABELS = """File|Edit|View|Insert|Format|Tools|Help|Home|Page Layout|References|Mailings|Review|Add-Ins|Paste|Cut|Copy|
Clipboard|Font|Paragraph|Styles|Editing|Find|Replace|Select|Normal|No Spacing|Heading 1|Heading 2|Title|Subtitle|Save|
Save As|Open|Print|Settings|Options|Cancel|OK|Apply|Close|Back|Next|Search|Refresh|Downloads|Documents|Desktop|Pictures|
Music|Videos|Recent|Properties|Share|Export|Import|Undo|Redo|Zoom|Window|Sort|Filter|Layout|Preview|Change Styles|
Select All|Data|Formulas|Sheet1|Sheet2|Run|Debug|Terminal|Selection|Go|Extensions|Account|Sign in|Log out|Profile|
Dashboard|Reports|Messages|Inbox|Sent|Drafts|Archive|Delete|Rename|New Folder|Upload|Download|Details|General|Advanced|
Privacy|Network|Display|Sound|Battery|Update|Install|Uninstall|Connect|Disconnect|Status|Ready|Page 1 of 1|Words: 0|
English (US)|100%|Ln 12, Col 4|UTF-8|Spaces: 4|Calibri (Body)|Times New Roman|Arial|11|12|14|Align Left|Center|Justify|
Bullets|Numbering|Shading|Borders|Table|Picture|Shapes|Chart|Header|Footer|Page Number|Text Box|Symbol|Comments""".replace(
    "\n", ""
).split("|")
_APPS = ["Microsoft Word", "Excel", "Notepad", "Visual Studio Code", "Firefox", "Settings", "File Explorer", "Terminal",
         "LibreOffice Writer", "Outlook", "Photos", "Calculator", "Google Chrome", "Task Manager"]
_STORES = ["BEN'S GROCER", "CITY MART", "FRESH FOODS SDN BHD", "SUNRISE BAKERY", "QUICK STOP", "MEGA HARDWARE",
           "GREEN LEAF CAFE", "ORCHID PHARMACY", "STAR ELECTRONICS", "PASAR BORONG", "DAILY NEEDS", "HAPPY MART"]


def _case(rng: np.random.Generator, text: str, upper_p: float = 0.25) -> str:
    """Random lettercase: as written, UPPER, lower or Title."""
    r = rng.random()
    if r < upper_p:
        return text.upper()
    if r < upper_p + 0.15:
        return text.lower()
    if r < upper_p + 0.35:
        return text.title()
    return text


def _choice(rng: np.random.Generator, items: Sequence[str]) -> str:
    """One random element of a sequence of strings."""
    return items[int(rng.integers(len(items)))]


def _digits(rng: np.random.Generator, n: int) -> str:
    """`n` random decimal digits."""
    return "".join(str(d) for d in rng.integers(0, 10, n))


def _letters(rng: np.random.Generator, n: int) -> str:
    """`n` random capital letters."""
    return "".join(string.ascii_uppercase[i] for i in rng.integers(0, 26, n))


def _words(rng: np.random.Generator, n: int) -> str:
    """`n` random common English words."""
    return " ".join(_choice(rng, _WORDS) for _ in range(n))


def t_sentence(rng: np.random.Generator) -> str:
    """A sentence-like run of words with a capital and sometimes punctuation."""
    s = _words(rng, int(rng.integers(4, 12)))
    return s[0].upper() + s[1:] + _choice(rng, [".", ".", ",", "", "?", "!", ":"])


def t_date(rng: np.random.Generator) -> str:
    """A date in one of the common formats."""
    y, m, d = int(rng.integers(1990, 2031)), int(rng.integers(1, 13)), int(rng.integers(1, 29))
    month = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"][m - 1]
    return _choice(rng, [f"{y}-{m:02d}-{d:02d}", f"{d:02d}/{m:02d}/{y}", f"{m}/{d}/{y % 100:02d}",
                         f"{d} {month} {y}", f"{d:02d}.{m:02d}.{y}", f"{month} {d}, {y}"])


def t_time(rng: np.random.Generator) -> str:
    """A clock time, 24 h or 12 h, sometimes with seconds."""
    h, mi, s = int(rng.integers(0, 24)), int(rng.integers(0, 60)), int(rng.integers(0, 60))
    return _choice(rng, [f"{h:02d}:{mi:02d}", f"{h:02d}:{mi:02d}:{s:02d}", f"{h % 12 or 12}:{mi:02d} {'AM' if h < 12 else 'PM'}"])


def t_price(rng: np.random.Generator) -> str:
    """A price with a currency in one of several styles."""
    v = float(np.exp(rng.uniform(0, 7)))
    return _choice(rng, [f"${v:.2f}", f"RM {v:.2f}", f"{v:.2f}", f"EUR {v:.2f}", f"{v:,.2f} USD", f"{int(v)},-", f"{v:.2f} $"])


def t_plate(rng: np.random.Generator) -> str:
    """A licence-plate-like string."""
    return _choice(rng, [f"{_letters(rng, 3)} {_digits(rng, 4)}", f"{_letters(rng, 2)} {_digits(rng, 2)} {_letters(rng, 2)} {_digits(rng, 4)}",
                         f"{_letters(rng, 1)}-{_letters(rng, 2)} {_digits(rng, 3)}", f"{_digits(rng, 1)}{_letters(rng, 3)}{_digits(rng, 3)}",
                         f"W{_letters(rng, 2)} {_digits(rng, 4)}"])


def t_code(rng: np.random.Generator) -> str:
    """A product code, invoice number, phone number, URL or similar."""
    return _choice(rng, [f"{_letters(rng, 2)}-{_digits(rng, 4)}", f"SKU {_digits(rng, 6)}", f"INV{_digits(rng, 7)}",
                         f"Tel: {_digits(rng, 3)}-{_digits(rng, 3)} {_digits(rng, 4)}", f"#{_digits(rng, 5)}",
                         f"www.{_choice(rng, _WORDS)}{_choice(rng, _WORDS)}.com", f"{_choice(rng, _WORDS)}@mail.com",
                         f"No. {_digits(rng, 3)}", f"{_digits(rng, 2)}%", f"v{rng.integers(1, 20)}.{rng.integers(0, 10)}.{rng.integers(0, 30)}",
                         f"{_digits(rng, 4)} {_digits(rng, 4)} {_digits(rng, 4)}", f"Gate {_letters(rng, 1)}{_digits(rng, 2)}"])


def t_number(rng: np.random.Generator) -> str:
    """A plain number: counts, quantities, measures."""
    v = float(np.exp(rng.uniform(0, 9)))
    return _choice(rng, [str(int(v)), f"{v:.1f}", f"{int(v):,}", f"{int(v)} km", f"{v:.1f} kg", f"x{int(v) % 20 + 1}"])


def t_sign(rng: np.random.Generator) -> str:
    """Short sign text: one to three sign words."""
    return " ".join(_choice(rng, _SIGN_WORDS) for _ in range(int(rng.integers(1, 4))))


def t_words(rng: np.random.Generator) -> str:
    """One to four words in a random case."""
    return _case(rng, _words(rng, int(rng.integers(1, 5))))


def t_ui(rng: np.random.Generator) -> str:
    """An application label: menu entry, button, tab or status-bar text."""
    return _choice(rng, _UI_LABELS)


_GENERATORS: dict[str, Callable[[np.random.Generator], str]] = {
    "words": t_words, "sentence": t_sentence, "date": t_date, "time": t_time, "price": t_price, "plate": t_plate,
    "code": t_code, "number": t_number, "sign": t_sign, "ui": t_ui,
}


def random_text(rng: np.random.Generator, *kinds: str) -> str:
    """Text of one of `kinds` (all kinds when none given)."""
    names = kinds or tuple(_GENERATORS)
    return _GENERATORS[_choice(rng, names)](rng)


# ---------------------------------------------------------------- rendering


@dataclass
class Glyphs:
    """A rendered text line: alpha masks plus its ink boxes, in mask coordinates."""

    fill: np.ndarray  # uint8 alpha of the letters
    outline: np.ndarray | None  # uint8 alpha of an outline around them, same shape
    segments: list[tuple[int, int, int, int]]  # ink boxes, split at wide gaps
    ink: tuple[int, int, int, int]  # hull of the segments

    @property
    def w(self) -> int:
        """Ink width in canvas pixels."""
        return self.ink[2] - self.ink[0]

    @property
    def h(self) -> int:
        """Ink height in canvas pixels."""
        return self.ink[3] - self.ink[1]


def ink_segments(alpha: np.ndarray, gap_factor: float = GAP_FACTOR) -> list[tuple[int, int, int, int]]:
    """Tight ink boxes of a rendered line, split where a column gap exceeds `gap_factor` x ink height."""
    ink = alpha > INK_THRESHOLD
    cols = np.flatnonzero(ink.any(0))
    rows = np.flatnonzero(ink.any(1))
    if len(cols) == 0:
        return []
    height = rows[-1] - rows[0] + 1
    breaks = np.flatnonzero(np.diff(cols) - 1 > gap_factor * height)
    starts = np.concatenate([[cols[0]], cols[breaks + 1]])
    ends = np.concatenate([cols[breaks], [cols[-1]]])
    segments = []
    for x0, x1 in zip(starts, ends):
        r = np.flatnonzero(ink[:, x0 : x1 + 1].any(1))
        segments.append((int(x0), int(r[0]), int(x1) + 1, int(r[-1]) + 1))
    return segments


def render(text: str, font: ImageFont.FreeTypeFont, outline_px: int = 0) -> Glyphs | None:
    """Render one line of text to alpha masks; None when it draws no ink at all."""
    pad = outline_px + 2
    left, top, right, bottom = font.getbbox(text)
    img = Image.new("L", (max(1, right - left + 2 * pad), max(1, bottom - top + 2 * pad)), 0)
    ImageDraw.Draw(img).text((pad - left, pad - top), text, font=font, fill=255)
    fill = np.asarray(img)
    outline = None
    if outline_px > 0:
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * outline_px + 1, 2 * outline_px + 1))
        outline = cv2.dilate(fill, k)
    segments = ink_segments(outline if outline is not None else fill)
    if not segments:
        return None
    xs0, ys0, xs1, ys1 = zip(*segments)
    return Glyphs(fill, outline, segments, (min(xs0), min(ys0), max(xs1), max(ys1)))


def blend(image: np.ndarray, alpha: np.ndarray, x: int, y: int, color: Sequence[float], opacity: float = 1.0) -> None:
    """Composite a solid colour through `alpha` at (x, y) into `image`, clipping at its borders."""
    h, w = image.shape[:2]
    ah, aw = alpha.shape
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + aw, w), min(y + ah, h)
    if x1 <= x0 or y1 <= y0:
        return
    a = alpha[y0 - y : y1 - y, x0 - x : x1 - x].astype(np.float32)[..., None] * (opacity / 255.0)
    region = image[y0:y1, x0:x1].astype(np.float32)
    image[y0:y1, x0:x1] = (region + (np.float32(color) - region) * a).astype(np.uint8)


def luminance(bgr: np.ndarray) -> float:
    """Perceived brightness of a BGR colour, 0-255."""
    return float(0.114 * bgr[0] + 0.587 * bgr[1] + 0.299 * bgr[2])


def contrast_color(rng: np.random.Generator, bg: np.ndarray, min_delta: float = 90.0) -> tuple[float, float, float]:
    """A random colour at least `min_delta` brighter or darker than the colour `bg`."""
    base = rng.uniform(0, 255, 3)
    lb = luminance(np.asarray(bg, np.float64))
    dark = lb > 127 if rng.random() < 0.9 else lb - min_delta > 0
    if dark:
        target = rng.uniform(0, max(lb - min_delta, 5))
        c = base * target / max(luminance(base), 1.0)
    else:
        target = rng.uniform(min(lb + min_delta, 250), 255)
        c = 255 - (255 - base) * (255 - target) / max(255 - luminance(base), 1.0)
    if rng.random() < 0.5:  # most text is black, white or grey
        c = np.full(3, luminance(c))
    return tuple(float(v) for v in np.clip(c, 0, 255))  # type: ignore[return-value]


@dataclass
class Canvas:
    """A scene being drawn: pixels, line boxes and do-not-care boxes, all in canvas pixels."""

    image: np.ndarray
    px: float  # canvas pixels per network pixel
    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)
    ignore: list[tuple[float, float, float, float]] = field(default_factory=list)

    @property
    def w(self) -> int:
        """Canvas width."""
        return self.image.shape[1]

    @property
    def h(self) -> int:
        """Canvas height."""
        return self.image.shape[0]

    def net(self, net_px: float) -> float:
        """Canvas pixels for a length given in network pixels."""
        return net_px * self.px

    def mean(self, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
        """Mean colour of a region (clipped), to choose a legible text colour."""
        xa, ya = int(max(0, x0)), int(max(0, y0))
        xb, yb = int(min(self.w, max(x1, xa + 1))), int(min(self.h, max(y1, ya + 1)))
        if xb <= xa or yb <= ya:
            return np.full(3, 128.0)
        return self.image[ya:yb, xa:xb].reshape(-1, 3).mean(0)

    def ink_contrast(self, g: Glyphs, ox: int, oy: int, color: Sequence[float], seg: tuple[int, int, int, int]) -> float:
        """Luminance difference between `color` and the pixels about to be covered by a segment's ink."""
        x0, y0, x1, y1 = seg
        cx0, cy0 = max(0, ox + x0), max(0, oy + y0)
        cx1, cy1 = min(self.w, ox + x1), min(self.h, oy + y1)
        if cx1 <= cx0 or cy1 <= cy0:
            return 255.0
        ink = g.fill[cy0 - oy : cy1 - oy, cx0 - ox : cx1 - ox] > INK_THRESHOLD
        if not ink.any():
            return 255.0
        under = self.image[cy0:cy1, cx0:cx1][ink].mean(0)
        return abs(luminance(np.float32(color)) - luminance(under))

    def place(self, g: Glyphs, x: float, y: float, color: Sequence[float], outline_color: Sequence[float] = (0, 0, 0)) -> None:
        """Draw glyphs with their ink top-left at (x, y) and record one box per ink segment.

        A segment whose colour barely differs from what lies under it (a dark word
        over a dark patch of photo) is recorded as *ignore*: a box on invisible
        text would teach the detector to fire on blank texture.
        """
        ox, oy = int(round(x)) - g.ink[0], int(round(y)) - g.ink[1]
        faint = [g.outline is None and self.ink_contrast(g, ox, oy, color, seg) < MIN_CONTRAST for seg in g.segments]
        if g.outline is not None:
            blend(self.image, g.outline, ox, oy, outline_color)
        blend(self.image, g.fill, ox, oy, color)
        for (sx0, sy0, sx1, sy1), weak in zip(g.segments, faint):
            (self.ignore if weak else self.boxes).append((ox + sx0, oy + sy0, ox + sx1, oy + sy1))

    def write(
        self, rng: np.random.Generator, text: str, font: ImageFont.FreeTypeFont, x: float, y: float,
        color: Sequence[float] | None = None, align: str = "left", outline_px: int = 0,
    ) -> Glyphs | None:
        """Render and place `text`; `align` makes x the left, centre or right of the ink. Returns the glyphs."""
        g = render(text, font, outline_px)
        if g is None:
            return None
        if align == "center":
            x -= g.w / 2
        elif align == "right":
            x -= g.w
        if color is None:
            color = contrast_color(rng, self.mean(x, y, x + g.w, y + g.h))
        self.place(g, x, y, color)
        return g


# ---------------------------------------------------------------- backgrounds


def _random_color(rng: np.random.Generator, lo: float = 0, hi: float = 255) -> tuple[float, float, float]:
    """A random BGR colour with channels in [lo, hi]."""
    c = rng.uniform(lo, hi, 3)
    return (float(c[0]), float(c[1]), float(c[2]))


def gradient(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A smooth bilinear blend of four random corner colours."""
    corners = rng.uniform(0, 255, (2, 2, 3)).astype(np.float32)
    return cv2.resize(corners, (w, h), interpolation=cv2.INTER_LINEAR).astype(np.uint8)


def clouds(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Multi-octave value noise: walls, sky, asphalt, blurred photos."""
    out = np.zeros((h, w, 3), np.float32)
    for cells, weight in ((4, 1.0), (16, 0.5), (64, 0.25)):
        small = rng.uniform(-1, 1, (max(2, cells * h // max(w, h)), cells, 1)).astype(np.float32)
        out += weight * cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)[..., None]
    a, b = np.float32(_random_color(rng)), np.float32(_random_color(rng))
    t = np.clip(out / 1.75 * 0.5 + 0.5, 0, 1)
    return (a + (b - a) * t).astype(np.uint8)


def stripes(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Parallel bands at a random angle and period, with noise: wood, fabric, blinds, railings."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ang = rng.uniform(0, math.pi)
    period = rng.uniform(3, 40)
    phase = (xx * math.cos(ang) + yy * math.sin(ang)) * (2 * math.pi / period)
    t = 0.5 + 0.5 * np.sin(phase + rng.uniform(0, 3) * np.sin(yy / rng.uniform(20, 200)))
    if rng.random() < 0.5:
        t = (t > 0.5).astype(np.float32)
    a, b = np.float32(_random_color(rng)), np.float32(_random_color(rng))
    return (a + (b - a) * t[..., None]).astype(np.uint8)


def grid(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A grid or tiles: windows of buildings, tables without text, fences, keyboards."""
    img = np.empty((h, w, 3), np.uint8)
    img[:] = _random_color(rng)
    step_x, step_y = int(rng.integers(6, 60)), int(rng.integers(6, 60))
    color, th = _random_color(rng), int(rng.integers(1, 4))
    for x in range(int(rng.integers(0, step_x)), w, step_x):
        cv2.line(img, (x, 0), (x, h), color, th)
    for y in range(int(rng.integers(0, step_y)), h, step_y):
        cv2.line(img, (0, y), (w, y), color, th)
    return img


def foliage(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Leaf-like high-frequency blobs in greens and browns: trees and hedges fool text detectors."""
    noise = rng.uniform(0, 1, (max(2, h // 3), max(2, w // 3))).astype(np.float32)
    noise = cv2.GaussianBlur(cv2.resize(noise, (w, h), interpolation=cv2.INTER_LINEAR), (0, 0), rng.uniform(0.8, 2.5))
    t = np.clip((noise - noise.mean()) / (noise.std() + 1e-6) * 0.35 + 0.5, 0, 1)[..., None]
    dark = np.float32([rng.uniform(0, 40), rng.uniform(20, 70), rng.uniform(0, 50)])
    light = np.float32([rng.uniform(20, 90), rng.uniform(90, 200), rng.uniform(40, 150)])
    return (dark + (light - dark) * t).astype(np.uint8)


def shapes(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Flat colour with random rectangles, circles and lines: man-made clutter."""
    img = np.empty((h, w, 3), np.uint8)
    img[:] = _random_color(rng)
    for _ in range(int(rng.integers(3, 15))):
        p = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        q = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        kind = rng.integers(3)
        if kind == 0:
            cv2.rectangle(img, p, q, _random_color(rng), -1 if rng.random() < 0.7 else int(rng.integers(1, 6)))
        elif kind == 1:
            cv2.circle(img, p, int(rng.integers(5, max(6, min(w, h) // 3))), _random_color(rng), -1)
        else:
            cv2.line(img, p, q, _random_color(rng), int(rng.integers(1, 8)))
    return img


def flat(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A plain colour with faint noise: walls, screens, paper."""
    img = np.empty((h, w, 3), np.uint8)
    img[:] = _random_color(rng)
    return img


_PROCEDURAL = (gradient, clouds, stripes, grid, foliage, shapes, flat)
_PROCEDURAL_P = np.array([0.2, 0.25, 0.1, 0.08, 0.1, 0.17, 0.1])


def background(rng: np.random.Generator, w: int, h: int, photo: PhotoFn | None, photo_p: float = 0.5) -> np.ndarray:
    """A text-free background: a crop of a real photo when available, else procedural."""
    if photo is not None and rng.random() < photo_p:
        img = photo(rng, w, h)
        if img is not None:
            return img
    fn = _PROCEDURAL[int(rng.choice(len(_PROCEDURAL), p=_PROCEDURAL_P))]
    return np.ascontiguousarray(fn(rng, w, h))


# ---------------------------------------------------------------- hard negatives (drawn, never boxed)


def draw_icon(img: np.ndarray, rng: np.random.Generator, x: int, y: int, s: int) -> None:
    """A small pictogram (disc, square, triangle, arrow, bars, ring) in an s x s cell."""
    color = _random_color(rng, 0, 230)
    kind = int(rng.integers(7))
    c = (x + s // 2, y + s // 2)
    if kind == 0:
        cv2.circle(img, c, max(1, s // 2 - 1), color, -1)
    elif kind == 1:
        cv2.rectangle(img, (x + 1, y + 1), (x + s - 2, y + s - 2), color, -1 if rng.random() < 0.5 else 1)
    elif kind == 2:
        pts = np.int32([[x + s // 2, y + 1], [x + s - 1, y + s - 2], [x + 1, y + s - 2]])
        cv2.fillPoly(img, [pts], color)
    elif kind == 3:
        cv2.arrowedLine(img, (x + 1, c[1]), (x + s - 2, c[1]), color, max(1, s // 8), tipLength=0.4)
    elif kind == 4:
        for i in range(3):
            yy = y + (i + 1) * s // 4
            cv2.line(img, (x + 2, yy), (x + s - 3, yy), color, max(1, s // 10))
    elif kind == 5:
        cv2.circle(img, c, max(1, s // 2 - 1), color, max(1, s // 8))
    else:
        cv2.rectangle(img, (x + 1, y + s // 4), (x + s - 2, y + s - 2), color, -1)
        cv2.rectangle(img, (x + 1, y + 1), (x + s // 2, y + s // 4), color, -1)


def draw_barcode(img: np.ndarray, rng: np.random.Generator, x: int, y: int, w: int, h: int) -> None:
    """A 1-D barcode: vertical bars of random widths on white."""
    cv2.rectangle(img, (x, y), (x + w, y + h), (250, 250, 250), -1)
    cx = x + max(2, w // 20)
    while cx < x + w - max(2, w // 20):
        bw = int(rng.integers(1, 4))
        if rng.random() < 0.55:
            cv2.rectangle(img, (cx, y + 2), (cx + bw - 1, y + h - 2), (0, 0, 0), -1)
        cx += bw


def draw_dashes(img: np.ndarray, rng: np.random.Generator, x0: int, x1: int, y: int, color: Sequence[float]) -> None:
    """A dashed or dotted rule, as on receipts and forms: text-like rhythm, but not text."""
    dash, gap = int(rng.integers(1, 8)), int(rng.integers(2, 6))
    for x in range(x0, x1, dash + gap):
        cv2.line(img, (x, y), (min(x + dash, x1), y), tuple(color), 1)


def paste_texture(img: np.ndarray, rng: np.random.Generator, x: int, y: int, w: int, h: int) -> None:
    """Fill a rectangle with a hard-negative texture (stripes, grid, foliage)."""
    x0, y0, x1, y1 = max(0, x), max(0, y), min(img.shape[1], x + w), min(img.shape[0], y + h)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return
    fn = (stripes, grid, foliage)[int(rng.integers(3))]
    img[y0:y1, x0:x1] = fn(rng, x1 - x0, y1 - y0)


# ---------------------------------------------------------------- scenes


@dataclass
class SceneContext:
    """What every scene needs: fonts, optional photo crops and the size limits."""

    fonts: FontBank
    photo: PhotoFn | None
    width: int
    height: int
    min_font_px: float = 8.0
    max_font_frac: float = 1 / 3

    def size(self, rng: np.random.Generator, lo: float, hi: float) -> float:
        """A log-uniform font size in network pixels, clamped to the configured range."""
        top = self.max_font_frac * min(self.width, self.height)
        lo, hi = max(lo, self.min_font_px), max(min(hi, top), self.min_font_px)
        return float(np.exp(rng.uniform(np.log(lo), np.log(max(hi, lo) + 1e-6))))


_ASPECTS = (16 / 9, 16 / 9, 4 / 3, 1.0, 3 / 4, 9 / 16, 21 / 9)


def new_canvas(rng: np.random.Generator, ctx: SceneContext, aspects: Sequence[float] = _ASPECTS) -> Canvas:
    """An empty canvas of random aspect that letterboxes at 0.55-1.0 canvas px per network px."""
    aspect = aspects[int(rng.integers(len(aspects)))]
    k = rng.uniform(0.55, 1.0)  # network px per canvas px
    if aspect >= ctx.width / ctx.height:
        w = ctx.width / k
        h = w / aspect
    else:
        h = ctx.height / k
        w = h * aspect
    return Canvas(np.zeros((max(16, int(h)), max(16, int(w)), 3), np.uint8), px=1.0 / k)


def _font(ctx: SceneContext, c: Canvas, rng: np.random.Generator, size_net: float, *styles: str) -> ImageFont.FreeTypeFont:
    """A font for the given network-pixel size, picked among `styles`."""
    return ctx.fonts.font(ctx.fonts.pick(rng, *styles), c.net(size_net))


def _overlaps(rect: tuple[float, float, float, float], taken: list[tuple[float, float, float, float]]) -> bool:
    """True when `rect` intersects any rectangle in `taken`."""
    x0, y0, x1, y1 = rect
    return any(x0 < b[2] and b[0] < x1 and y0 < b[3] and b[1] < y1 for b in taken)


def scene_sign(rng: np.random.Generator, ctx: SceneContext) -> Canvas:
    """Signs, plates, price tags and labels on a photo: one to five panels of 1-3 centred lines."""
    c = new_canvas(rng, ctx)
    c.image = background(rng, c.w, c.h, ctx.photo, photo_p=0.7)
    taken: list[tuple[float, float, float, float]] = []
    for _ in range(int(rng.integers(1, 6))):
        size = ctx.size(rng, 8, 110) if rng.random() < 0.8 else ctx.size(rng, 8, 16)
        font = _font(ctx, c, rng, size, "bold+sans", "sans", "condensed", "display", "serif", "bold+serif", "mono")
        kinds = ("sign", "words", "price", "plate", "code", "number", "date", "time")
        lines = [g for g in (render(_case(rng, random_text(rng, *kinds), 0.5), font) for _ in range(int(rng.integers(1, 4)))) if g]
        if not lines:
            continue
        lead = c.net(size) * rng.uniform(1.15, 1.6)
        margin = c.net(size) * rng.uniform(0.3, 1.0)
        pw = max(g.w for g in lines) + 2 * margin
        ph = lead * (len(lines) - 1) + lines[-1].h + 2 * margin
        if pw >= c.w or ph >= c.h:
            continue
        for _try in range(8):
            x, y = rng.uniform(0, c.w - pw), rng.uniform(0, c.h - ph)
            if not _overlaps((x, y, x + pw, y + ph), taken):
                break
        else:
            continue
        taken.append((x, y, x + pw, y + ph))
        panel = rng.random() < 0.75
        if panel:
            pc = _random_color(rng)
            cv2.rectangle(c.image, (int(x), int(y)), (int(x + pw), int(y + ph)), pc, -1)
            if rng.random() < 0.4:
                cv2.rectangle(c.image, (int(x + 2), int(y + 2)), (int(x + pw - 3), int(y + ph - 3)), contrast_color(rng, np.float32(pc)), max(1, int(c.net(size) / 10)))
        color = contrast_color(rng, c.mean(x, y, x + pw, y + ph), 110)
        centre = rng.random() < 0.7
        for i, g in enumerate(lines):
            gx, gy = (x + pw / 2 - g.w / 2 if centre else x + margin), y + margin + i * lead
            if not panel:  # straight on the photo: judge contrast line by line, often add an outline
                color = contrast_color(rng, c.mean(gx, gy, gx + g.w, gy + g.h), 110)
                if rng.random() < 0.5:
                    g = render_outlined(g, font_outline_px(c, size)) or g
            dark = luminance(np.float32(color)) > 127
            c.place(g, gx, gy, color, outline_color=(0, 0, 0) if dark else (255, 255, 255))
        if rng.random() < 0.3:
            s = int(c.net(rng.uniform(8, 24)))
            ix, iy = int(x + pw + s * 0.5), int(y)
            if ix + s < c.w and not _overlaps((ix, iy, ix + s, iy + s), taken):
                draw_icon(c.image, rng, ix, iy, s)
    return c


def font_outline_px(c: Canvas, size_net: float) -> int:
    """Outline thickness in canvas px for text of the given network size."""
    return max(1, int(round(c.net(size_net) * 0.08)))


def render_outlined(g: Glyphs, outline_px: int) -> Glyphs | None:
    """Add an outline to already rendered glyphs (pads the masks; the boxes grow with the outline)."""
    fill = cv2.copyMakeBorder(g.fill, outline_px, outline_px, outline_px, outline_px, cv2.BORDER_CONSTANT, value=0)
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * outline_px + 1, 2 * outline_px + 1))
    outline = cv2.dilate(fill, k)
    segments = ink_segments(outline)
    if not segments:
        return None
    xs0, ys0, xs1, ys1 = zip(*segments)
    return Glyphs(fill, outline, segments, (min(xs0), min(ys0), max(xs1), max(ys1)))


def _fill_words(rng: np.random.Generator, font: ImageFont.FreeTypeFont, max_w: float) -> str:
    """Words appended until the line would exceed `max_w` canvas px (at least one word)."""
    words = [_choice(rng, _WORDS)]
    while True:
        nxt = _choice(rng, _WORDS) if rng.random() > 0.12 else random_text(rng, "number", "date", "price", "code")
        if font.getlength(" ".join(words + [nxt])) > max_w:
            break
        words.append(nxt)
    text = " ".join(words)
    return text[0].upper() + text[1:]


def paragraph(
    rng: np.random.Generator, c: Canvas, font: ImageFont.FreeTypeFont, x: float, y: float, w: float, y_end: float,
    lead: float, color: Sequence[float],
) -> float:
    """Left-aligned lines with a ragged right edge from y down to y_end; returns the next free y."""
    n = int(rng.integers(1, 9))
    for i in range(n):
        if y + lead > y_end:
            break
        width = w if i < n - 1 else w * rng.uniform(0.2, 1.0)
        c.write(rng, _fill_words(rng, font, width * rng.uniform(0.85, 1.0)), font, x, y, color)
        y += lead
    return y + lead * rng.uniform(0.3, 1.0)


def scene_document(rng: np.random.Generator, ctx: SceneContext) -> Canvas:
    """A page of a document: heading, left-aligned paragraphs, sometimes two columns or key/value rows."""
    c = new_canvas(rng, ctx, (4 / 3, 3 / 4, 1.0, 16 / 9, 9 / 16))
    c.image = background(rng, c.w, c.h, ctx.photo)
    # The page may run past the canvas: a close-up of a document; clipped lines become ignore regions.
    px0, py0 = c.w * rng.uniform(-0.1, 0.2), c.h * rng.uniform(-0.1, 0.15)
    px1, py1 = c.w * rng.uniform(0.8, 1.1), c.h * rng.uniform(0.85, 1.1)
    paper = _random_color(rng, 200, 255) if rng.random() < 0.85 else _random_color(rng, 0, 255)
    cv2.rectangle(c.image, (int(px0), int(py0)), (int(px1), int(py1)), paper, -1)
    body = ctx.size(rng, 8, 24)
    style = _choice(rng, ["serif", "sans", "mono", "condensed", "serif", "sans"])
    font = _font(ctx, c, rng, body, style)
    ink = contrast_color(rng, np.float32(paper), 120)
    lead = c.net(body) * rng.uniform(1.25, 1.8)
    margin = c.net(body) * rng.uniform(1.0, 4.0)
    x, y, right = px0 + margin, py0 + margin, px1 - margin
    if rng.random() < 0.7:
        hsize = min(body * rng.uniform(1.3, 3.0), ctx.max_font_frac * ctx.height)
        hfont = _font(ctx, c, rng, hsize, "bold+" + style, "bold", style)
        text = _case(rng, _words(rng, int(rng.integers(1, 6))), 0.3)
        if rng.random() < 0.4:
            g = c.write(rng, text, hfont, (x + right) / 2, y, ink, align="center")
        else:
            g = c.write(rng, text, hfont, x, y, ink)
        y += (g.h if g else 0) + lead
    cols = 2 if rng.random() < 0.25 and right - x > c.net(body) * 30 else 1
    col_w = (right - x - margin * (cols - 1)) / cols
    bottom = min(py1, c.h) - margin * 0.5
    for col in range(cols):
        cx, cy = x + col * (col_w + margin), y
        while cy + lead < bottom:
            if rng.random() < 0.2:
                cy = key_values(rng, c, font, cx, cy, col_w, bottom, lead, ink)
            else:
                cy = paragraph(rng, c, font, cx, cy, col_w, bottom, lead, ink)
    return c


def key_values(
    rng: np.random.Generator, c: Canvas, font: ImageFont.FreeTypeFont, x: float, y: float, w: float, y_end: float,
    lead: float, color: Sequence[float],
) -> float:
    """Rows of 'label .... value' with the value right-aligned far away: two boxes per row."""
    for _ in range(int(rng.integers(2, 7))):
        if y + lead > y_end:
            break
        left = c.write(rng, _case(rng, _words(rng, int(rng.integers(1, 4))), 0.5), font, x, y, color)
        value = random_text(rng, "price", "number", "date", "code", "time")
        if left is not None and font.getlength(value) + left.w + 3 * lead < w:
            c.write(rng, value, font, x + w, y, color, align="right")
        y += lead
    return y + lead * 0.5


def scene_receipt(rng: np.random.Generator, ctx: SceneContext) -> Canvas:
    """A till receipt: centred header, item/price rows, dashed rules, totals, sometimes a barcode."""
    c = new_canvas(rng, ctx, (3 / 4, 9 / 16, 1.0, 4 / 3, 16 / 9))
    c.image = background(rng, c.w, c.h, ctx.photo)
    body = ctx.size(rng, 8, 20)
    font = _font(ctx, c, rng, body, "mono", "mono", "condensed", "sans", "mono+bold")
    lead = c.net(body) * rng.uniform(1.2, 1.6)
    pw = min(c.w, font.getlength("M" * int(rng.integers(28, 44))) + 2 * lead)
    px0 = rng.uniform(-0.05 * pw, max(0.0, c.w - pw * 0.95))
    py0 = c.h * rng.uniform(-0.4, 0.1)
    paper = _random_color(rng, 215, 255)
    cv2.rectangle(c.image, (int(px0), int(py0)), (int(px0 + pw), c.h + 5), paper, -1)
    ink = contrast_color(rng, np.float32(paper), 130)
    x0, x1, mid, y = px0 + lead, px0 + pw - lead, px0 + pw / 2, py0 + lead
    header = [_choice(rng, _STORES), f"({_digits(rng, 6)}-{_letters(rng, 1)})", f"LOT {rng.integers(1, 99)}, JALAN {_choice(rng, _SIGN_WORDS)}",
              t_code(rng), "TAX INVOICE"]
    for text in header[: int(rng.integers(2, 6))]:
        c.write(rng, text, font, mid, y, ink, align="center")
        y += lead
    draw_dashes(c.image, rng, int(x0), int(x1), int(y + lead * 0.3), ink)
    y += lead
    c.write(rng, f"{t_date(rng)}  {t_time(rng)}", font, x0, y, ink)
    y += lead * 1.5
    while y < c.h - lead * 3:
        item = _case(rng, _words(rng, int(rng.integers(1, 4))), 0.7)
        price = f"{np.exp(rng.uniform(0, 5)):.2f}"
        c.write(rng, item, font, x0, y, ink)
        if font.getlength(item) + font.getlength(price) + 3 * lead < x1 - x0:
            c.write(rng, price, font, x1, y, ink, align="right")
        y += lead
        if rng.random() < 0.08:
            draw_dashes(c.image, rng, int(x0), int(x1), int(y + lead * 0.2), ink)
            y += lead
            c.write(rng, _choice(rng, ["TOTAL", "SUBTOTAL", "GST 6%", "CASH", "CHANGE", "ROUNDING"]), font, x0, y, ink)
            c.write(rng, t_price(rng), font, x1, y, ink, align="right")
            y += lead * 1.5
        if rng.random() < 0.04:
            bh = int(lead * 2.5)
            draw_barcode(c.image, rng, int(mid - pw / 4), int(y), int(pw / 2), bh)
            y += bh + lead * 0.5
    return c


def _label_row(
    rng: np.random.Generator, c: Canvas, ctx: SceneContext, x: float, y: float, x_end: float, size: float,
    color: Sequence[float], icons: bool,
) -> None:
    """A row of UI labels (menu, tabs, status bar) separated by wide gaps, sometimes with icons."""
    font = _font(ctx, c, rng, size, "sans", "sans", "condensed")
    gap = c.net(size) * rng.uniform(1.6, 3.5)
    while x < x_end:
        if icons and rng.random() < 0.3:
            s = int(c.net(size) * 1.2)
            draw_icon(c.image, rng, int(x), int(y), s)
            x += s + gap
            continue
        g = render(t_ui(rng), font)
        if g is None:
            continue
        if x + g.w > x_end:
            break
        c.place(g, x, y + (c.net(size) - g.h) * 0.5, color)
        x += g.w + gap


def _toolbar(rng: np.random.Generator, c: Canvas, ctx: SceneContext, y0: float, y1: float, theme: np.ndarray) -> None:
    """A ribbon: groups of icons, combo boxes and tiny labels, a caption under each group, separators between."""
    x = c.net(4)
    fg = contrast_color(rng, theme, 110)
    small = ctx.size(rng, 8, 11)
    font = _font(ctx, c, rng, small, "sans", "sans", "condensed")
    cap_y = y1 - c.net(small) * 1.4
    while x < c.w - c.net(60):
        gx0 = x
        gw = c.net(rng.uniform(50, 160))
        s = int(c.net(rng.uniform(10, 18)))
        cy = y0 + c.net(3)
        while cy + s < cap_y - c.net(2):
            cx = gx0
            while cx + s < gx0 + gw:
                r = rng.random()
                if r < 0.45:
                    draw_icon(c.image, rng, int(cx), int(cy), s)
                    cx += s + c.net(4)
                elif r < 0.75:
                    g = render(t_ui(rng), font)
                    if g is None or cx + g.w > gx0 + gw:
                        break
                    c.place(g, cx, cy + (s - g.h) / 2, fg)
                    cx += g.w + max(c.net(small) * 1.5, g.h * 1.3)
                else:
                    bw = font.getlength("Times New Roman") + s
                    if cx + bw > gx0 + gw:
                        break
                    cv2.rectangle(c.image, (int(cx), int(cy)), (int(cx + bw), int(cy + s)), (255, 255, 255), -1)
                    cv2.rectangle(c.image, (int(cx), int(cy)), (int(cx + bw), int(cy + s)), (170, 170, 170), 1)
                    g = render(_choice(rng, ["Times New Rom", "Calibri (Body)", "Arial", "12", "11", "Normal", "100%"]), font)
                    if g is not None and g.w < bw - s:
                        c.place(g, cx + c.net(2), cy + (s - g.h) / 2, (0, 0, 0))
                    cx += bw + c.net(small) * 1.5
            cy += s + c.net(4)
        g = render(_choice(rng, ["Clipboard", "Font", "Paragraph", "Styles", "Editing", "Insert", "View", "Tools", "Data"]), font)
        if g is not None and g.w < gw:
            c.place(g, gx0 + (gw - g.w) / 2, cap_y, fg)
        x = gx0 + gw + c.net(8)
        cv2.line(c.image, (int(x - c.net(4)), int(y0 + 2)), (int(x - c.net(4)), int(y1 - 2)), (160, 160, 160), 1)


def scene_screen(rng: np.random.Generator, ctx: SceneContext) -> Canvas:
    """An application window: title bar, menu/tabs, ribbon with tiny labels, content, status bar."""
    c = new_canvas(rng, ctx, (16 / 9, 16 / 10, 4 / 3, 21 / 9))
    dark = rng.random() < 0.3
    theme = np.float32(_random_color(rng, 20, 70) if dark else _random_color(rng, 215, 250))
    c.image[:] = theme
    fg = contrast_color(rng, theme, 120)
    if rng.random() < 0.2:
        return _terminal(rng, c, ctx)
    y = 0.0
    title = ctx.size(rng, 9, 16)
    bar_h = c.net(title) * rng.uniform(1.8, 2.4)
    bar = np.float32(_random_color(rng))
    cv2.rectangle(c.image, (0, 0), (c.w, int(bar_h)), tuple(float(v) for v in bar), -1)
    tfont = _font(ctx, c, rng, title, "sans")
    name = f"{_case(rng, _choice(rng, _WORDS), 0.1)}{rng.integers(1, 9)} - {_choice(rng, _APPS)}"
    centred = rng.random() < 0.6
    c.write(rng, name, tfont, c.w / 2 if centred else c.net(30), (bar_h - c.net(title) * 0.75) / 2,
            contrast_color(rng, bar, 110), align="center" if centred else "left")
    for i in range(3):
        draw_icon(c.image, rng, int(c.w - (i + 1) * bar_h), int(bar_h * 0.25), max(4, int(bar_h * 0.5)))
    y = bar_h + c.net(3)
    msize = ctx.size(rng, 8, 14)
    _label_row(rng, c, ctx, c.net(8), y, c.w - c.net(20), msize, fg, icons=False)
    y += c.net(msize) * 1.8
    if rng.random() < 0.75:
        rib_h = c.net(rng.uniform(50, 90))
        cv2.line(c.image, (0, int(y)), (c.w, int(y)), (170, 170, 170), 1)
        _toolbar(rng, c, ctx, y + 2, y + rib_h, theme)
        y += rib_h + c.net(4)
    ssize = ctx.size(rng, 8, 12)
    status_y = c.h - c.net(ssize) * 1.8
    cv2.rectangle(c.image, (0, int(status_y)), (c.w, c.h), tuple(float(v) * 0.92 for v in theme), -1)
    _label_row(rng, c, ctx, c.net(6), status_y + c.net(ssize) * 0.35, c.w * 0.9, ssize, fg, icons=True)
    _content(rng, c, ctx, y, status_y - c.net(4))
    return c


def _content(rng: np.random.Generator, c: Canvas, ctx: SceneContext, y0: float, y1: float) -> None:
    """The window body: a page of text (big and small), a file list, or a form of labels and buttons."""
    if y1 - y0 < c.net(30):
        return
    kind = rng.random()
    if kind < 0.5:
        x0, x1 = c.w * rng.uniform(0.02, 0.15), c.w * rng.uniform(0.85, 0.98)
        cv2.rectangle(c.image, (int(x0), int(y0)), (int(x1), int(y1) + 5), (255, 255, 255), -1)
        size = ctx.size(rng, 9, 70)
        font = _font(ctx, c, rng, size, "sans", "serif", "display", "bold")
        ink = contrast_color(rng, np.float32([255, 255, 255]), 100)
        y = y0 + c.net(size) * 0.5
        lead = c.net(size) * rng.uniform(1.2, 1.7)
        mode = int(rng.integers(3))
        while y + lead < y1:
            if mode == 0:
                c.write(rng, _case(rng, _words(rng, int(rng.integers(1, 4))), 0.2), font, (x0 + x1) / 2, y, ink, align="center")
            elif mode == 1:
                c.write(rng, _fill_words(rng, font, (x1 - x0) * rng.uniform(0.3, 0.9)), font, x0 + lead, y, ink)
            else:  # two columns far apart, like the seed's "Sample Text   Sample Text"
                text = _case(rng, _words(rng, int(rng.integers(1, 3))), 0.1)
                c.write(rng, text, font, x0 + lead, y, ink)
                if font.getlength(text) * 2 + 3 * lead < x1 - x0:
                    c.write(rng, text, font, x1 - lead, y, ink, align="right")
            y += lead * rng.uniform(1.0, 2.0)
    elif kind < 0.8:
        size = ctx.size(rng, 8, 14)
        font = _font(ctx, c, rng, size, "sans", "condensed")
        ink = contrast_color(rng, c.mean(0, y0, c.w, y1), 110)
        lead = c.net(size) * rng.uniform(1.6, 2.4)
        cols = np.cumsum([c.net(size) * 1.5] + [c.net(size) * rng.uniform(14, 22) for _ in range(3)])
        y = y0 + lead * 0.5
        while y + lead < y1:
            if rng.random() < 0.5:
                draw_icon(c.image, rng, int(cols[0] - c.net(size) * 1.3), int(y), int(c.net(size)))
            for i, x in enumerate(cols):
                if x < c.w * 0.95:
                    text = (t_words, t_date, t_number, t_ui)[i](rng)
                    if font.getlength(text) < (cols[1] - cols[0]) - 2 * lead:
                        c.write(rng, text, font, x, y, ink)
            y += lead
    else:
        size = ctx.size(rng, 8, 16)
        font = _font(ctx, c, rng, size, "sans")
        ink = contrast_color(rng, c.mean(0, y0, c.w, y1), 110)
        y, x = y0 + c.net(size), c.w * rng.uniform(0.05, 0.3)
        while y + c.net(size) * 3 < y1:
            g = c.write(rng, t_ui(rng) + ":", font, x, y, ink)
            bx = x + c.net(size) * 12
            if g is not None and bx + c.net(size) * 10 < c.w:
                bh = c.net(size) * 1.8
                cv2.rectangle(c.image, (int(bx), int(y - c.net(size) * 0.4)), (int(bx + c.net(size) * 14), int(y - c.net(size) * 0.4 + bh)), (200, 200, 200), 1)
                if rng.random() < 0.5:
                    c.write(rng, random_text(rng, "words", "number", "code", "date"), font, bx + c.net(size) * 0.5, y, ink)
            y += c.net(size) * 2.6


def _terminal(rng: np.random.Generator, c: Canvas, ctx: SceneContext) -> Canvas:
    """A console: monospaced, left-aligned lines of commands and logs on a dark background."""
    c.image[:] = _random_color(rng, 0, 45)
    size = ctx.size(rng, 8, 16)
    font = _font(ctx, c, rng, size, "mono")
    ink = _random_color(rng, 170, 255)
    lead = c.net(size) * rng.uniform(1.15, 1.5)
    y = c.net(size) * 0.5
    while y + lead < c.h:
        r = rng.random()
        if r < 0.3:
            text = f"user@host:~/{_choice(rng, _WORDS)}$ {_choice(rng, ['ls -la', 'cd', 'git status', 'make', 'cat', 'python3', 'tail -f'])} {_choice(rng, _WORDS)}"
        elif r < 0.6:
            text = f"{t_date(rng)} {t_time(rng)} {_choice(rng, ['INFO', 'WARN', 'ERROR', 'DEBUG'])} {_words(rng, int(rng.integers(2, 8)))}"
        elif r < 0.9:
            text = f"{_choice(rng, ['drwxr-xr-x', '-rw-r--r--'])} 1 user user {rng.integers(0, 99999):>6} {t_date(rng)} {_choice(rng, _WORDS)}.txt"
        else:
            y += lead
            continue
        text = text[: int(rng.integers(8, 90))]
        c.write(rng, text, font, c.net(4), y, ink)
        y += lead
    return c


def scene_overlay(rng: np.random.Generator, ctx: SceneContext) -> Canvas:
    """Video overlays on a frame: outlined subtitles, a news ticker, a camera timestamp, a channel logo."""
    c = new_canvas(rng, ctx, (16 / 9, 16 / 9, 4 / 3, 21 / 9))
    c.image = background(rng, c.w, c.h, ctx.photo, photo_p=0.7)
    parts = [p for p in ("subtitle", "ticker", "stamp", "logo") if rng.random() < 0.5] or ["subtitle"]
    bottom = c.h
    if "ticker" in parts:
        size = ctx.size(rng, 9, 28)
        band = c.net(size) * rng.uniform(1.6, 2.2)
        top = c.h - band - c.net(rng.uniform(0, 20))
        col = _random_color(rng)
        cv2.rectangle(c.image, (0, int(top)), (c.w, int(top + band)), col, -1)
        font = _font(ctx, c, rng, size, "bold+sans", "sans", "condensed")
        x = -c.w * rng.uniform(0, 0.3)  # runs in from beyond the left edge: clipped lines become ignore
        ink = contrast_color(rng, np.float32(col), 120)
        while x < c.w:
            g = c.write(rng, _case(rng, t_sentence(rng), 0.5), font, x, top + (band - c.net(size) * 0.75) / 2, ink)
            x += (g.w if g else 0) + c.net(size) * rng.uniform(2, 5)
        bottom = top
    if "subtitle" in parts:
        size = ctx.size(rng, 10, 36)
        font = _font(ctx, c, rng, size, "sans", "bold+sans", "serif")
        ink = (255, 255, 255) if rng.random() < 0.7 else (0, 255, 255)
        n = int(rng.integers(1, 3))
        lead = c.net(size) * 1.3
        y = bottom - c.net(size) * 0.8 - lead * n
        boxed = rng.random() < 0.3
        for i in range(n):
            text = _fill_words(rng, font, c.w * rng.uniform(0.3, 0.85))
            g = render(text, font, 0 if boxed else font_outline_px(c, size))
            if g is None:
                continue
            gx = c.w / 2 - g.w / 2
            if boxed:
                pad = int(c.net(size) * 0.3)
                sub = c.image[max(0, int(y + i * lead) - pad) : int(y + i * lead + g.h) + pad, max(0, int(gx) - pad) : int(gx + g.w) + pad]
                sub[:] = (sub * 0.35).astype(np.uint8)
            c.place(g, gx, y + i * lead, ink)
    if "stamp" in parts:
        size = ctx.size(rng, 8, 18)
        font = _font(ctx, c, rng, size, "mono", "sans", "bold+sans")
        x, y = c.net(rng.uniform(4, 20)), c.net(rng.uniform(4, 20))
        g = render(f"{t_date(rng)} {t_time(rng)}", font, font_outline_px(c, size) if rng.random() < 0.5 else 0)
        if g is not None:
            right = "logo" not in parts and rng.random() < 0.4  # the logo owns the top-right corner
            c.place(g, c.w - x - g.w if right else x, y, (255, 255, 255) if rng.random() < 0.8 else (0, 255, 255))
        if "subtitle" not in parts and rng.random() < 0.5:  # bottom-right: would collide with subtitles
            c.write(rng, f"CAM {rng.integers(1, 20):02d} {_choice(rng, _SIGN_WORDS).title()}", font, c.w - x, bottom - c.net(size) * 2, (255, 255, 255), align="right")
    if "logo" in parts:
        size = ctx.size(rng, 10, 30)
        font = _font(ctx, c, rng, size, "bold+sans", "display", "bold")
        c.write(rng, _choice(rng, ["NEWS 24", "LIVE", "HD", "SPORT", "TV5", "CH 7", "REPLAY", "BBC", "CNN"]), font,
                c.w - c.net(12), c.net(12), None, align="right", outline_px=font_outline_px(c, size) if rng.random() < 0.3 else 0)
    return c


def scene_negative(rng: np.random.Generator, ctx: SceneContext) -> Canvas:
    """Hard negatives only: stripes, grids, foliage, icons, barcodes and dashed rules, with no boxes."""
    c = new_canvas(rng, ctx)
    c.image = background(rng, c.w, c.h, ctx.photo, photo_p=0.4)
    for _ in range(int(rng.integers(2, 9))):
        kind = int(rng.integers(4))
        w, h = int(rng.uniform(0.05, 0.5) * c.w), int(rng.uniform(0.05, 0.5) * c.h)
        x, y = int(rng.integers(0, max(1, c.w - w))), int(rng.integers(0, max(1, c.h - h)))
        if kind == 0:
            paste_texture(c.image, rng, x, y, w, h)
        elif kind == 1:
            s = int(c.net(rng.uniform(8, 40)))
            for i in range(int(rng.integers(1, 10))):
                if x + (i + 1) * s * 1.4 < c.w and y + s < c.h:
                    draw_icon(c.image, rng, int(x + i * s * 1.4), y, s)
        elif kind == 2:
            draw_barcode(c.image, rng, x, y, max(20, w // 2), max(10, h // 3))
        else:
            color = _random_color(rng)
            for i in range(int(rng.integers(1, 8))):
                draw_dashes(c.image, rng, x, x + w, y + i * int(c.net(rng.uniform(6, 20))), color)
    return c


SCENES: dict[str, Callable[[np.random.Generator, SceneContext], Canvas]] = {
    "sign": scene_sign,
    "document": scene_document,
    "receipt": scene_receipt,
    "screen": scene_screen,
    "overlay": scene_overlay,
    "negative": scene_negative,
}
