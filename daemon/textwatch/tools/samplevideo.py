"""The bundled sample video with known text, rendered by the project itself.

`make run` plays data/sample.mp4 through the daemon and the end-to-end tests
compare what comes out with data/sample.json, so both are generated here from
our own scenes (never copied from ../shared). The clip imitates a screen being
watched: a document window whose body text stays for a few seconds and then
changes (some lines are edited, one appears), and a subtitle line at the bottom
that changes every two seconds. Frames are mostly static so 'mp4v' keeps the
file small enough to commit.

Tests make other clips (texts, fps, sizes) with `render_video` into tmp dirs.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from PIL import Image, ImageDraw

from textwatch.tools.samples import SANS, SANS_BOLD, SERIF, font

Role = Literal["title", "body", "subtitle"]

DEFAULT_SIZE = (1280, 720)
DEFAULT_FPS = 10.0
DEFAULT_FRAMES = 80  # 8 s at 10 fps


@dataclass(frozen=True)
class TimedText:
    """A line of known text shown from `first_frame` to `last_frame` (inclusive).

    `role` places it: the window's title bar, body row `row` of the document,
    or the subtitle band at the bottom.
    """

    text: str
    first_frame: int
    last_frame: int
    role: Role = "body"
    row: int = 0

    def visible(self, index: int) -> bool:
        return self.first_frame <= index <= self.last_frame


def _script() -> tuple[TimedText, ...]:
    """The sample clip: text stays 4.5 s, then two lines change and one appears."""
    end = DEFAULT_FRAMES - 1
    change = 45
    subtitles = [
        "Welcome to the textwatch demo",
        "Text on screen is read live",
        "Each line is published on ZeroMQ",
        "End of the sample clip",
    ]
    return (
        TimedText("Quarterly Report - textwatch Writer", 0, end, "title"),
        TimedText("Sample Text", 0, end, "body", 0),
        TimedText("Quarterly sales rose 12 percent", 0, end, "body", 1),
        TimedText("Invoice 4471 due 2026-12-01", 0, change - 1, "body", 2),
        TimedText("Invoice 4471 paid 2026-11-28", change, end, "body", 2),
        TimedText("Total amount EUR 318.40", 0, change - 1, "body", 3),
        TimedText("Total amount EUR 0.00", change, end, "body", 3),
        TimedText("Meeting room B at 14:30", 0, end, "body", 4),
        TimedText("Next review on Friday 09:00", change, end, "body", 5),
        *(TimedText(text, i * 20, i * 20 + 19, "subtitle") for i, text in enumerate(subtitles)),
    )


SAMPLE_SCRIPT: tuple[TimedText, ...] = _script()


def render_frame(lines: Sequence[TimedText], size: tuple[int, int] = DEFAULT_SIZE) -> np.ndarray:
    """One BGR frame showing `lines`; layout scales with the frame height."""
    width, height = size
    scale = height / 720
    image = Image.new("RGB", (width, height), (236, 236, 236))
    draw = ImageDraw.Draw(image)
    bar = max(12, int(34 * scale))
    draw.rectangle((0, 0, width, bar), fill=(43, 87, 154))
    margin = int(width * 0.125)
    draw.rectangle((margin, int(70 * scale), width - margin, height), fill=(255, 255, 255), outline=(200, 200, 200))
    for line in lines:
        if line.role == "title":
            face = font(SANS, max(8, int(18 * scale)))
            text_width = draw.textlength(line.text, font=face)
            draw.text(((width - text_width) // 2, int(6 * scale)), line.text, font=face, fill=(255, 255, 255))
        elif line.role == "body":
            face = font(SANS_BOLD, max(8, int(34 * scale))) if line.row == 0 else font(SERIF, max(8, int(28 * scale)))
            y = int((110 + 66 * line.row) * scale)
            draw.text((margin + int(60 * scale), y), line.text, font=face, fill=(0, 0, 0))
    for line in lines:
        if line.role == "subtitle":
            face = font(SANS, max(8, int(30 * scale)))
            x1, y1, x2, y2 = draw.textbbox((0, 0), line.text, font=face)
            pad = int(10 * scale) + 2
            x = (width - (x2 - x1)) // 2
            y = height - int(40 * scale) - (y2 - y1)
            draw.rectangle((x - pad, y + y1 - pad, x + (x2 - x1) + pad, y + y2 + pad), fill=(16, 16, 16))
            draw.text((x - x1, y), line.text, font=face, fill=(255, 255, 255))
    return cv2.cvtColor(np.asarray(image), cv2.COLOR_RGB2BGR)


def render_video(
    path: str | Path,
    script: Sequence[TimedText] = SAMPLE_SCRIPT,
    *,
    fps: float = DEFAULT_FPS,
    frames: int | None = None,
    size: tuple[int, int] = DEFAULT_SIZE,
    fourcc: str = "mp4v",
) -> list[dict[str, object]]:
    """Write a clip of `script` to `path`; return the known text per span (as in sample.json).

    `frames` defaults to one past the last frame the script uses. Identical
    frames are rendered once: the clip is mostly static, which is also why it
    compresses well.
    """
    count = frames if frames is not None else max(line.last_frame for line in script) + 1
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, size)
    if not writer.isOpened():
        raise RuntimeError(f"cannot write {path} with fourcc {fourcc!r}")
    cache: dict[tuple[int, ...], np.ndarray] = {}
    try:
        for index in range(count):
            key = tuple(i for i, line in enumerate(script) if line.visible(index))
            if key not in cache:
                cache[key] = render_frame([script[i] for i in key], size)
            writer.write(cache[key])
    finally:
        writer.release()
    return known_text(script, count)


def known_text(script: Sequence[TimedText], frames: int) -> list[dict[str, object]]:
    """The spans of `script` that fall within `frames`, clipped to the clip's length."""
    spans = []
    for line in script:
        if line.first_frame < frames:
            span = asdict(line)
            span["last_frame"] = min(line.last_frame, frames - 1)
            spans.append({key: span[key] for key in ("text", "first_frame", "last_frame", "role")})
    return spans


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Render textwatch's sample video and its known text (JSON beside it).")
    parser.add_argument("--out", type=Path, required=True, help="MP4 to write; the JSON goes beside it")
    args = parser.parse_args(argv)
    spans = render_video(args.out)
    args.out.with_suffix(".json").write_text(json.dumps(spans, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
