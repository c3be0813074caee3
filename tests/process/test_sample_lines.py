"""`make run`'s clip read whole: every line of the bundled sample, one read per line.

Regression (issue 15): with the shipped YOLOv4 boxes `make run` printed line
starts cut off ("ag room B at 14:30", "eview on Friday 09:00"), two rows in one
read ("Total amount EUR 318.40 Meeting room B at 14:30") and window borders
as glyphs. Line geometry (detect/lines.py) puts each box on one whole row; the
default pipeline (shipped detector, PP-OCR) must then read exactly the
sample's script on frames from each part of the clip.
"""

from __future__ import annotations

import json

import cv2
import pytest

from support.models import needs_shipped_model
from support.paths import ROOT
from textwatch.config import load_settings
from textwatch.tools.oneshot import OneShot, text_lines

SAMPLE = ROOT / "daemon" / "textwatch" / "data"
FRAMES = (10, 30, 50, 70)  # one in each of the subtitle's four parts


@pytest.fixture(scope="module")
def reads() -> dict[int, list[str]]:
    needs_shipped_model()
    one = OneShot(load_settings(None))
    capture = cv2.VideoCapture(str(SAMPLE / "sample.mp4"))
    out, index = {}, 0
    try:
        while index <= max(FRAMES):
            ok, frame = capture.read()
            assert ok, f"sample.mp4 ended at frame {index}"
            if index in FRAMES:
                out[index] = text_lines(one.read(frame))
            index += 1
    finally:
        capture.release()
        one.close()
    return out


@pytest.mark.parametrize("frame", FRAMES)
def test_each_line_of_the_sample_is_read_whole_and_alone(reads: dict[int, list[str]], frame: int) -> None:
    script = json.loads((SAMPLE / "sample.json").read_text())
    expected = sorted(line["text"] for line in script if line["first_frame"] <= frame <= line["last_frame"])
    assert sorted(reads[frame]) == expected
