"""Pictures on the bus: the newest frame of each camera and the crops of tracked regions, as JPEG.

The detect process is the only one that holds pixels; subscribers get none
from text.* or track.*. The live view (`textwatch view`) needs each camera's
newest frame with its boxes, and the history store needs a picture of each
track. `MediaSender` makes both, in the detect process, at a bounded rate:

    snapshot.<camera>  at most media.snapshot_fps per camera, scaled to media.snapshot_width
    crop.<camera>      at most media.crop_fps per camera: the crop of a tracked region
                       that was just sent to OCR (the tracker sends a region when it is
                       new, changed or clearly better, so these are its best views)

A picture over its camera's rate is not encoded at all and is counted
(`media_skipped.snapshot_rate`, `media_skipped.crop_picture_rate` in detect's
stats). The messages are wire.encode_media's [topic, JSON header, JPEG]; the
XPUB chain only carries them to the publisher while a subscriber wants them.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict, dataclass, field

import cv2
import numpy as np

from textwatch import wire
from textwatch.config import MediaSettings


@dataclass
class RateGate:
    """A token bucket per key (camera): `per_second` passes a second on average, bursts of up to
    max(1, per_second) (a frame where five tracks appear at once keeps all five pictures); 0 = never."""

    per_second: float
    tokens: dict[str, tuple[float, float]] = field(default_factory=dict)  # key -> (tokens, at)

    def allow(self, key: str, now: float) -> bool:
        if self.per_second <= 0:
            return False
        burst = max(1.0, self.per_second)
        tokens, at = self.tokens.get(key, (burst, now))
        tokens = min(burst, tokens + (now - at) * self.per_second)
        if tokens < 1.0:
            self.tokens[key] = (tokens, now)
            return False
        self.tokens[key] = (tokens - 1.0, now)
        return True


def encode_jpeg(image: np.ndarray, quality: int, max_width: int | None = None) -> bytes:
    """A BGR or gray image as JPEG bytes, scaled down to `max_width` first when wider."""
    if max_width is not None and image.shape[1] > max_width:
        scale = max_width / image.shape[1]
        image = cv2.resize(image, (max_width, max(1, round(image.shape[0] * scale))), interpolation=cv2.INTER_AREA)
    ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError(f"OpenCV could not encode a {image.shape} image as JPEG")
    return buffer.tobytes()


class MediaSender:
    """Builds the snapshot and crop-picture messages of the detect process, within their rates."""

    def __init__(self, settings: MediaSettings) -> None:
        self.settings = settings
        self.snapshots = RateGate(settings.snapshot_fps)
        self.crops = RateGate(settings.crop_fps)
        self.dropped: Counter[str] = Counter()  # by reason; detect's stats media_skipped

    def snapshot(
        self, camera: str, seq: int, ts: float, image: np.ndarray, boxes: list[tuple[tuple[int, int, int, int], int | None]],
        now: float | None = None,
    ) -> list[bytes] | None:
        """The snapshot message of this frame, or None when the camera's snapshot rate is used up (counted)."""
        if self.settings.snapshot_fps <= 0:
            return None
        if not self.snapshots.allow(camera, time.monotonic() if now is None else now):
            self.dropped["snapshot_rate"] += 1
            return None
        header = wire.SnapshotHeader(
            camera=camera, seq=seq, ts=ts, width=int(image.shape[1]), height=int(image.shape[0]),
            boxes=[asdict(wire.MediaBox(box=tuple(box), track=track)) for box, track in boxes[: wire.MAX_MEDIA_BOXES]],
        )
        jpeg = encode_jpeg(image, self.settings.jpeg_quality, self.settings.snapshot_width)
        return wire.encode_media(wire.TOPIC_SNAPSHOT, header, jpeg)

    def crop(
        self, camera: str, seq: int, ts: float, track: int | None, box: tuple[int, int, int, int], pixels: np.ndarray,
        now: float | None = None,
    ) -> list[bytes] | None:
        """The crop-picture message of a tracked region sent to OCR, or None (untracked, or over the rate: counted)."""
        if track is None or self.settings.crop_fps <= 0:
            return None
        if not self.crops.allow(camera, time.monotonic() if now is None else now):
            self.dropped["crop_picture_rate"] += 1
            return None
        header = wire.CropImageHeader(camera=camera, seq=seq, ts=ts, track=track, box=tuple(box))
        return wire.encode_media(wire.TOPIC_CROP, header, encode_jpeg(pixels, self.settings.jpeg_quality))
