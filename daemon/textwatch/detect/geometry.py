"""Input geometry shared by training and inference: letterbox, tiles, box mapping.

Decision (docs/detector.md): the network sees a *letterboxed* image: the frame is
scaled by one factor to fit inside the network input, centred, and the border is
filled with grey 114. Text is wide and thin, and stretching a 16:9 frame into a
square would squash characters differently for every source aspect ratio; with
one scale factor a line looks the same to the network whatever the camera. The
trainer renders its samples through `letterbox` too, so both sides agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

PAD_VALUE = 114

Box = tuple[int, int, int, int]  # x1, y1, x2, y2 in frame pixels, x2 and y2 exclusive


def crop(frame: np.ndarray, box: Box) -> np.ndarray:
    """The box's pixels, clipped to the frame (possibly empty); a view, not a copy.

    The one crop of the runtime: detect cuts what it sends to the pool with it,
    the tracker what it compares, the one-shot path what it reads.
    """
    height, width = frame.shape[:2]
    x1, y1 = max(0, box[0]), max(0, box[1])
    x2, y2 = min(width, box[2]), min(height, box[3])
    return frame[y1:max(y1, y2), x1:max(x1, x2)]


@dataclass(frozen=True)
class Letterbox:
    """How a source region was mapped into the network input: x_net = x_src * scale + dx."""

    scale: float
    dx: float
    dy: float

    def to_source(self, boxes: np.ndarray) -> np.ndarray:
        """Map Nx4 xyxy boxes from network-input pixels back to source pixels."""
        out = boxes.astype(np.float32).copy()
        out[:, [0, 2]] = (out[:, [0, 2]] - self.dx) / self.scale
        out[:, [1, 3]] = (out[:, [1, 3]] - self.dy) / self.scale
        return out

    def to_net(self, boxes: np.ndarray) -> np.ndarray:
        """Map Nx4 xyxy boxes from source pixels into network-input pixels."""
        out = boxes.astype(np.float32).copy()
        out[:, [0, 2]] = out[:, [0, 2]] * self.scale + self.dx
        out[:, [1, 3]] = out[:, [1, 3]] * self.scale + self.dy
        return out


def letterbox(image: np.ndarray, width: int, height: int) -> tuple[np.ndarray, Letterbox]:
    """Scale `image` to fit width x height keeping its aspect ratio, centre it, pad grey."""
    h, w = image.shape[:2]
    scale = min(width / w, height / h)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (new_w, new_h), interpolation=interp)
    dx, dy = (width - new_w) // 2, (height - new_h) // 2
    canvas = np.full((height, width, 3), PAD_VALUE, dtype=np.uint8)
    canvas[dy : dy + new_h, dx : dx + new_w] = resized
    return canvas, Letterbox(scale, float(dx), float(dy))


def tile_origins(length: int, tile: int, overlap: float) -> list[int]:
    """Start offsets of tiles of size `tile` covering `length` with at least `overlap` shared."""
    if length <= tile:
        return [0]
    step = max(1, int(tile * (1.0 - overlap)))
    count = int(np.ceil((length - tile) / step)) + 1
    # Spread the tiles evenly so the last one ends exactly at the border.
    return [round(i * (length - tile) / (count - 1)) for i in range(count)]


def fitted_tile(width: int, height: int, tile: int, overlap: float, smallest: int) -> int:
    """The smallest square tile edge (not below `smallest`) that covers the frame with as many tiles
    as `tile` does.

    `tile` decides how many tiles a frame gets, and so the number of forwards; the tiles
    themselves need only be as large as that count requires. Tiles of 640 cut a 1280x720
    frame into 3 x 2, and 3 x 2 tiles of 493 cover it too: the same six forwards, with text
    1.3x larger at the network input. An axis a single tile spans keeps its whole length.
    """
    counts = tiles_per_axis(width, height, tile, overlap)
    need = [
        length if count == 1 else length / (1 + (count - 1) * (1.0 - overlap))
        for length, count in zip((width, height), counts)
    ]
    fitted = min(tile, max(smallest, int(np.ceil(max(need)))))
    while fitted < tile and tiles_per_axis(width, height, fitted, overlap) != counts:
        fitted += 1  # int() of the step in tile_origins can ask for a pixel or two more
    return fitted


def tiles_per_axis(width: int, height: int, tile: int, overlap: float) -> tuple[int, int]:
    """How many tiles of edge `tile` `tiles` lays across and down a width x height frame."""
    return len(tile_origins(width, min(tile, width), overlap)), len(tile_origins(height, min(tile, height), overlap))


def tiles(width: int, height: int, tile: int, overlap: float) -> list[Box]:
    """Overlapping square tiles (x1, y1, x2, y2) covering a width x height frame."""
    size_x, size_y = min(tile, width), min(tile, height)
    return [
        (x, y, x + size_x, y + size_y)
        for y in tile_origins(height, size_y, overlap)
        for x in tile_origins(width, size_x, overlap)
    ]


def clip_boxes(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Clip Nx4 xyxy boxes to the frame [0, width] x [0, height]."""
    out = boxes.copy()
    out[:, [0, 2]] = np.clip(out[:, [0, 2]], 0, width)
    out[:, [1, 3]] = np.clip(out[:, [1, 3]], 0, height)
    return out
