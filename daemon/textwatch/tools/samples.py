"""Sample images with known text, rendered by the project itself.

`make run`, the tests and the benchmarks need inputs whose text is known and
which the project may ship; files from ../shared are never copied in. The
scene imitates the seed's test image (a word-processor window: title bar,
toolbar labels, body text) so the one-shot path is exercised on the kind of
input the seed was written for.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from textwatch.errors import BackendUnavailable

FONT_DIRS = (Path("/usr/share/fonts"), Path("/usr/local/share/fonts"))
SANS = "DejaVuSans.ttf"
SANS_BOLD = "DejaVuSans-Bold.ttf"
SERIF = "DejaVuSerif.ttf"

TITLE = "Report2 - textwatch Writer"
TOOLBAR = ["File", "Home", "Insert", "Layout", "Review", "View"]
BODY = [
    "Sample Text",
    "Align Text",
    "Quarterly sales rose 12 percent",
    "Invoice 4471 due 2026-12-01",
    "Total amount EUR 318.40",
    "Meeting room B at 14:30",
]


@dataclass(frozen=True)
class Line:
    """A rendered line of known text and its ink box (x1, y1, x2, y2) in image pixels."""

    text: str
    box: tuple[int, int, int, int]


@lru_cache(maxsize=None)
def find_font(name: str) -> Path:
    """Path of an installed font file by file name (fonts-dejavu-core ships DejaVu)."""
    for folder in FONT_DIRS:
        for path in folder.rglob(name):
            return path
    raise BackendUnavailable(f"font {name} not found under {', '.join(map(str, FONT_DIRS))}; install fonts-dejavu-core")


@lru_cache(maxsize=64)
def font(name: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(find_font(name)), size)


def draw_text(draw: ImageDraw.ImageDraw, xy: tuple[int, int], text: str, face: ImageFont.FreeTypeFont, fill: tuple[int, int, int]) -> Line:
    draw.text(xy, text, font=face, fill=fill)
    x1, y1, x2, y2 = draw.textbbox(xy, text, font=face)
    return Line(text, (int(x1), int(y1), int(x2), int(y2)))


def document_window(width: int = 1280, height: int = 720) -> tuple[np.ndarray, list[Line]]:
    """A word-processor window with a title, a toolbar and body text; BGR image and its lines."""
    image = Image.new("RGB", (width, height), (236, 236, 236))
    draw = ImageDraw.Draw(image)
    lines: list[Line] = []
    draw.rectangle((0, 0, width, 34), fill=(43, 87, 154))
    lines.append(draw_text(draw, (width // 2 - 150, 6), TITLE, font(SANS, 18), (255, 255, 255)))
    x = 16
    for label in TOOLBAR:
        line = draw_text(draw, (x, 46), label, font(SANS, 15), (30, 30, 30))
        lines.append(line)
        x = line.box[2] + 28
    draw.rectangle((160, 90, width - 160, height), fill=(255, 255, 255), outline=(200, 200, 200))
    y = 130
    for index, text in enumerate(BODY):
        face = font(SANS_BOLD if index == 0 else SERIF, 34 if index < 2 else 26)
        lines.append(draw_text(draw, (220, y), text, face, (0, 0, 0)))
        y += 80 if index < 2 else 62
    return cv2.cvtColor(np.asarray(image), cv2.COLOR_RGB2BGR), lines


def line_crop(text: str, height: int = 40, face: str = SANS, inverted: bool = False) -> np.ndarray:
    """A tight BGR crop of one rendered line, as the detector would cut it (with padding)."""
    size = max(6, int(height * 0.62))
    ttf = font(face, size)
    x1, y1, x2, y2 = ttf.getbbox(text)
    pad = max(2, height // 6)
    image = Image.new("RGB", (x2 - x1 + 2 * pad, height), (255, 255, 255))
    ImageDraw.Draw(image).text((pad - x1, (height - (y2 - y1)) // 2 - y1), text, font=ttf, fill=(0, 0, 0))
    array = cv2.cvtColor(np.asarray(image), cv2.COLOR_RGB2BGR)
    return 255 - array if inverted else array


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Render textwatch's sample image with known text.")
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    args = parser.parse_args(argv)
    image, lines = document_window()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), image)
    args.out.with_suffix(".txt").write_text("".join(line.text + "\n" for line in lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
