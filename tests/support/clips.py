"""Video files with known text, written by the tests."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from textwatch.tools.samples import line_crop


def write_line_clip(path: Path, texts: list[str], frames_each: int = 10, fps: float = 10.0, lead_in: int = 0) -> Path:
    """An MP4 showing each text as one tight line for `frames_each` frames, in order, after `lead_in`
    blank frames.

    A lead-in is for a test that must see the first text of a file played once: its subscriber,
    connected before the daemon, joins within ~100 ms of the publisher's bind, but the daemon can
    read and publish a first frame sooner than that, and ZeroMQ keeps nothing for a late subscriber.
    """
    crops = [line_crop(text, height=56) for text in texts]
    width = max(c.shape[1] for c in crops) + 32
    width += width % 2
    size = (width, 64)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    for _ in range(lead_in):
        writer.write(np.full((64, width, 3), 255, np.uint8))
    for crop in crops:
        frame = np.full((64, width, 3), 255, np.uint8)
        frame[4 : 4 + crop.shape[0], 8 : 8 + crop.shape[1]] = crop
        for _ in range(frames_each):
            writer.write(frame)
    writer.release()
    return path
