"""Pictures on the bus: media messages in wire.py, their rate in media.py, and old readers of [topic, JSON]."""

from __future__ import annotations

import numpy as np
import pytest

from textwatch import wire
from textwatch.config import MediaSettings
from textwatch.media import MediaSender, RateGate


def test_a_snapshot_round_trips_and_old_readers_see_its_header() -> None:
    sender = MediaSender(MediaSettings(snapshot_width=64))
    image = np.full((72, 128, 3), 200, np.uint8)
    message = sender.snapshot("cam1", 7, 1.5, image, [((1, 2, 30, 40), 3), ((5, 5, 9, 9), None)], now=0.0)
    assert message is not None and message[0] == b"snapshot.cam1"
    name, header, jpeg = wire.decode_media(message)
    assert jpeg[:2] == b"\xff\xd8" and (header["width"], header["height"]) == (128, 72)  # boxes in frame pixels
    assert header["boxes"] == [{"box": [1, 2, 30, 40], "track": 3}, {"box": [5, 5, 9, 9], "track": None}]
    assert wire.decode_published(message) == (name, header)  # what `textwatch subscribe` reads


@pytest.mark.parametrize("frames, words", [
    ([b"text.cam1", b'{"v":1}', b"\xff\xd8"], "not a media topic"),
    ([b"crop.cam1", b'{"v":1,"camera":"cam1"}', b"\xff\xd8"], "field missing"),
    ([b"crop.cam2", b'{"v":1,"camera":"cam1","seq":1,"ts":1,"track":1,"box":[0,0,1,1]}', b"\xff\xd8"], "does not match"),
    ([b"crop.cam1", b'{"v":1,"camera":"cam1","seq":1,"ts":1,"track":1,"box":[0,0,1,1]}', b"GIF89a"], "not a JPEG"),
    ([b"crop.cam1", b'{"v":2}', b"\xff\xd8"], "schema version"),
])
def test_malformed_media_messages_are_refused(frames: list[bytes], words: str) -> None:
    with pytest.raises(wire.WireError, match=words):
        wire.decode_published(frames)


def test_pictures_over_the_rate_are_not_made_and_are_counted() -> None:
    sender = MediaSender(MediaSettings(snapshot_fps=2.0, crop_fps=2.0))
    image = np.zeros((16, 16, 3), np.uint8)
    snaps = [sender.snapshot("cam1", i, 0.0, image, [], now=i * 0.1) for i in range(10)]  # 10 frames in 1 s
    assert sum(s is not None for s in snaps) == 3  # a burst of 2, then one more in the second
    crops = [sender.crop("cam1", 0, 0.0, i, (0, 0, 16, 16), image, now=0.0) for i in range(5)]
    assert sum(c is not None for c in crops) == 2
    assert sender.crop("cam1", 0, 0.0, None, (0, 0, 16, 16), image, now=9.0) is None  # untracked: no picture
    assert sender.dropped == {"snapshot_rate": 7, "crop_picture_rate": 3}


def test_a_rate_of_zero_sends_nothing() -> None:
    assert not RateGate(0.0).allow("cam1", 0.0)
    assert MediaSender(MediaSettings(snapshot_fps=0.0)).snapshot("cam1", 0, 0.0, np.zeros((8, 8, 3), np.uint8), []) is None
