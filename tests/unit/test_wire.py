"""The wire protocol: round trips, and hostile bytes through every decoder raise only WireError."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from support.messages import header, text_result
from textwatch import wire
from textwatch.tools.samples import line_crop
from textwatch.wire import FrameNotice


def test_crop_round_trip() -> None:
    pixels = line_crop("Sample Text")
    h = header(shape=pixels.shape)
    got_header, got_pixels = wire.decode_crop([bytes(f) for f in wire.encode_crop(h, pixels)])
    assert got_header == h
    assert np.array_equal(got_pixels, pixels)


def test_published_round_trip() -> None:
    result = text_result(camera="door", region=1, regions=2)
    name, payload = wire.decode_published(wire.encode_published(wire.TOPIC_TEXT, result, "door"))
    assert name == "text.door" and wire.text_result_from_dict(payload) == result
    frame = wire.FrameResult("door", 0, 1.0, [payload], missing=[0], complete=False)
    assert wire.decode_published(wire.encode_published(wire.TOPIC_FRAME, frame, "door"))[1]["missing"] == [0]
    assert wire.decode_published(wire.encode_published(wire.TOPIC_STATS, {"process": "w"}))[0] == "stats"


HOSTILE_VALUES = [
    None, True, False, -1, 0, 2**64, -(2**63), 10**30, 1e308, -0.0, "", "x" * 1000, "\u0000", [], [1] * 4,
    [-1, -1, -1, -1], [2**40, 2**40, 3], [100_000, 100_000, 3], [1, 1, 2], [0, 5, 3], {}, {"a": 1}, [[1]], 1.5,
]
RAW_LITERALS = [b"NaN", b"Infinity", b"-Infinity", b"1e999", b"9" * 5000, b"[" * 50_000, b'"\\ud800"']


def hostile_cases(rng: random.Random, n: int):
    """Seeded hostile inputs: random bytes, wrong frame counts, mutated valid headers, raw JSON literals."""
    valid = dict(json.loads(bytes(wire.encode_crop(header(shape=(2, 3, 3)), np.zeros((2, 3, 3), np.uint8))[0])))
    keys = list(valid)
    for i in range(n):
        kind = i % 5
        if kind == 0:
            yield [rng.randbytes(rng.randint(0, 64)) for _ in range(rng.randint(0, 4))]
        elif kind == 1:
            mutated = dict(valid)
            for key in rng.sample(keys, rng.randint(1, 3)):
                if rng.random() < 0.15:
                    mutated.pop(key)
                else:
                    mutated[key] = rng.choice(HOSTILE_VALUES)
            yield [json.dumps(mutated).encode(), rng.randbytes(rng.choice([0, 17, 18, 19]))]
        elif kind == 2:
            key = rng.choice(keys)
            raw = json.dumps({**valid, key: "@@"}).encode().replace(b'"@@"', rng.choice(RAW_LITERALS))
            yield [raw, bytes(18)]
        elif kind == 3:
            good = [json.dumps(valid).encode(), bytes(18)]
            yield good[: rng.randint(0, 1)] + [bytes(rng.randint(0, 3))] * rng.randint(0, 3)
        else:
            data = bytearray(json.dumps(valid).encode())
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            yield [bytes(data), bytes(18)]


def test_hostile_bytes_raise_only_wire_error() -> None:
    """2000 seeded hostile messages through every decoder: a WireError or a valid result, nothing else."""
    rng = random.Random(20261125)
    outcomes = {"ok": 0, "wire_error": 0}
    for frames in hostile_cases(rng, 2000):
        for decode in (wire.decode_crop, wire.decode_published, _decode_text_result):
            try:
                decode(frames)
                outcomes["ok"] += 1
            except wire.WireError:
                outcomes["wire_error"] += 1
    assert outcomes["wire_error"] > 5000  # almost all hostile cases are refused


def _decode_text_result(frames: list[bytes]) -> wire.TextResult:
    return wire.text_result_from_dict(wire.decode_published(frames)[1])


def test_over_long_integer_is_a_wire_error() -> None:
    """Regression: a 5000-digit JSON integer raised a bare ValueError (Python's int-digits limit), not WireError."""
    with pytest.raises(wire.WireError):
        wire.decode_published([b"stats", b'{"v":' + b"1" * 5000 + b"}"])


def test_nan_and_huge_shapes_are_refused() -> None:
    h = json.loads(bytes(wire.encode_crop(header(shape=(2, 3, 3)), np.zeros((2, 3, 3), np.uint8))[0]))
    for bad in ({"ts": "NaN"}, {"confidence": "Infinity"}, {"shape": [100_000, 100_000, 3]}, {"shape": [2, 3, 4]}):
        raw = json.dumps({**h, **{k: "@@" for k in bad}}).encode()
        value = next(iter(bad.values()))
        raw = raw.replace(b'"@@"', value.encode() if isinstance(value, str) else json.dumps(value).encode())
        with pytest.raises(wire.WireError):
            wire.decode_crop([raw, bytes(18)])


def test_frame_notice_parsing_is_strict() -> None:
    notice = wire.frame_notice_from_dict({"camera": "cam", "seq": 3, "ts": 1.5, "regions": 2, "sent": 1, "v": 1})
    assert notice == FrameNotice("cam", 3, 1.5, 2, 1)
    for bad in ({"camera": "cam", "seq": 3, "ts": 1.5, "regions": 1}, {"camera": "cam", "seq": 3, "ts": 1.5, "regions": 0, "sent": 0},
                {"camera": "cam", "seq": 3, "ts": 1.5, "regions": 1, "sent": 2},
                {"camera": "cam", "seq": "3", "ts": 1.5, "regions": 1, "sent": 1}):
        with pytest.raises(wire.WireError):
            wire.frame_notice_from_dict(bad)


def test_a_huge_crop_is_scaled_down_before_it_is_read() -> None:
    """Regression (issue 22): a legal 4096x4096 crop kept a worker in Tesseract for more than 90 s
    at 2.8 GB, past ocr.timeout_ms. The worker reads at most MAX_READ_PIXELS, text height scaled alike."""
    import numpy as np

    from textwatch.recognize.reading import MAX_READ_PIXELS, bounded

    crop, height = bounded(np.zeros((4096, 4096, 3), np.uint8), 400.0)
    assert crop.shape[0] * crop.shape[1] <= MAX_READ_PIXELS and crop.shape[0] == crop.shape[1]
    assert height is not None and abs(height - 400.0 * crop.shape[0] / 4096) < 1.0
    small = np.zeros((40, 300), np.uint8)
    assert bounded(small, 30.0) == (small, 30.0)
