"""Every wire parser fuzzed with Hypothesis (issue 22): any input gives a parsed value or WireError,
never another exception; a parsed value has its declared types and can be published again; an error
is one bounded line; and no parse allocates more than a few MB, whatever sizes a message claims.

The parsers are found by name in wire.py (`*_from_dict`, `decode_*`): a new one without valid
examples here fails test_every_parser_is_fuzzed. docs/operations.md, "Fuzzing", says how to run long.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import types
import typing
from typing import Any

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from support.fuzz import DEEP_LIST, FUZZ, HOSTILE_VALUES, json_values, mutated, peak_bytes
from support.messages import header, text_result
from textwatch import wire

MAX_PEAK = 4 * 1024 * 1024  # bytes one parse may allocate (the largest fuzz input is ~1 MB of map entries)
MAX_ERROR = 500  # characters of a WireError's message: it goes into a log line


def _payload(obj: Any) -> dict[str, Any]:
    """The JSON object the sender of `obj` puts on the bus, as the receiver's dict."""
    return json.loads(wire.encode_published("x", obj)[1])


def _camera_stats() -> wire.CameraStats:
    return wire.CameraStats(frames_read=9, frames_skipped=1, frames_delivered=8, reconnects=0, stalls=0,
                            read_errors=0, up=True, crops_sent=4)


def _counts(names: tuple[str, ...]) -> dict[str, int]:
    return {name: i for i, name in enumerate(names)}


STATS = [
    wire.DetectStats(process="detect", ts=2.0, started=1.0, rss_bytes=10, detect_ms_total=5.0, detect_ms_avg=1.0,
                     crops_dropped={"queue_full": 1}, cameras={"cam": _camera_stats()}, ocr_skipped={"tracked": 2},
                     regions_ignored={"mask": 1}, gate={"frames_detected": 3}, cpu_ms_total=7.0,
                     media_skipped={"snapshot_rate": 1}, **_counts(wire.DETECT_COUNTS)),
    wire.WorkerStats(process="ocr-0", ts=2.0, ocr_ms_total=3.0, **_counts(wire.WORKER_COUNTS)),
    wire.PublisherStats(process="publisher", ts=2.0, started=1.0, **_counts(wire.PUBLISHER_COUNTS)),
    wire.HistoryStats(process="history", ts=2.0, **_counts(wire.HISTORY_COUNTS)),
    wire.MqttStats(process="mqtt", ts=2.0, dropped={"queue_full": 0}, connected=False, **_counts(wire.MQTT_COUNTS)),
]
BOX = (1, 2, 30, 40)
# Valid payloads of every dict parser, as their senders encode them; the fuzz mutates these.
VALID: dict[str, list[dict[str, Any]]] = {
    "text_result_from_dict": [_payload(text_result(camera="cam", region=1, regions=2)),
                              _payload(dataclasses.replace(text_result(), track=7, error="timeout"))],
    "frame_notice_from_dict": [_payload(wire.FrameNotice("cam", 3, 1.5, 2, 1))],
    "track_notice_from_dict": [_payload(wire.TrackNotice("cam", 4, "appeared", 3, 1.5, BOX, 1, 1.0, 3, 1.5)),
                               _payload(wire.TrackNotice("cam", 4, "gone", 3, 1.5, BOX, 1, 1.0, 3, 1.5, "missed"))],
    "stats_from_dict": [_payload(stats) for stats in STATS],
    "snapshot_from_dict": [_payload(wire.SnapshotHeader("cam", 3, 1.5, 640, 480, [{"box": list(BOX), "track": 4},
                                                                                 {"box": list(BOX), "track": None}]))],
    "crop_image_from_dict": [_payload(wire.CropImageHeader("cam", 3, 1.5, 4, BOX))],
    "track_event_from_dict": [_payload(wire.TrackEvent("cam", 4, "changed", 1.5, BOX, "AB12", 88.0, 3, 1, 1.0, 3, 1.5)),
                              _payload(wire.TrackEvent("cam", 4, "gone", 1.5, None, "", 0.0, 0, 1, 1.0, 3, 1.5, "aged"))],
    "source_event_from_dict": [_payload(wire.SourceEvent("cam", "source_down", "rtsp://***@h/", "stall", 1.5))],
}
JPEG = b"\xff\xd8\xff\xe0" + bytes(60) + b"\xff\xd9"
PIXELS = np.arange(18, dtype=np.uint8).reshape(2, 3, 3)
# Valid multipart messages of every byte-level decoder.
VALID_FRAMES: dict[str, list[list[bytes]]] = {
    "decode_crop": [[bytes(f) for f in wire.encode_crop(header(shape=(2, 3, 3)), PIXELS)],
                    [bytes(f) for f in wire.encode_crop(dataclasses.replace(header(shape=(2, 3, 1)), track=3,
                                                                            engine="ppocr", charset="AB"),
                                                        PIXELS[:, :, :1])]],
    "decode_published": [wire.encode_published(wire.TOPIC_TEXT, text_result(camera="cam"), "cam"),
                         wire.encode_published(wire.TOPIC_STATS, STATS[0]),
                         wire.encode_published(wire.TOPIC_FRAME_NOTICE, wire.FrameNotice("cam", 3, 1.5, 2, 1), "cam")],
    "decode_media": [wire.encode_media(wire.TOPIC_SNAPSHOT, wire.SnapshotHeader("cam", 3, 1.5, 640, 480, []), JPEG),
                     wire.encode_media(wire.TOPIC_CROP, wire.CropImageHeader("cam", 3, 1.5, 4, BOX), JPEG)],
}
# Hand-picked claims of absurd sizes: none may cost more than MAX_PEAK to refuse.
SIZE_CLAIMS = {
    "frame_notice_from_dict": {"regions": 10**9, "sent": 10**9},
    "text_result_from_dict": {"regions": 10**9, "region": 10**9 - 1},
    "snapshot_from_dict": {"width": 10**9, "height": 10**9, "boxes": [{"box": list(BOX)}] * 10**5},
    "track_event_from_dict": {"reads": 10**30},
    "stats_from_dict": {"cameras": {str(i): {} for i in range(10**5)}},
}


def _parsers() -> dict[str, Any]:
    return {name: fn for name, fn in inspect.getmembers(wire, inspect.isfunction)
            if fn.__module__ == wire.__name__ and (name.endswith("_from_dict") or name.startswith("decode_"))}


def test_every_parser_is_fuzzed() -> None:
    """A parser added to wire.py without fuzz examples here fails: none is forgotten."""
    assert set(_parsers()) == set(VALID) | set(VALID_FRAMES)


def test_valid_examples_parse() -> None:
    """The fuzz starts from valid messages: each one parses (else the mutations prove nothing)."""
    for name, payloads in VALID.items():
        for payload in payloads:
            _check_parsed(getattr(wire, name)(payload))
    for name, messages in VALID_FRAMES.items():
        for frames in messages:
            _check_decoded(name, getattr(wire, name)(frames))


# ---------------------------------------------------------------- the property


def _outcome(name: str, arg: Any) -> Any:
    """The parse of `arg` by wire.<name>: a well-typed value that can be sent again, or None for a WireError."""
    try:
        value = getattr(wire, name)(arg)
    except wire.WireError as err:
        message = str(err)
        assert len(message) <= MAX_ERROR and "\n" not in message, f"{name} error is not one short line: {message[:200]!r}"
        return None
    if name in VALID_FRAMES:
        _check_decoded(name, value)
    else:
        _check_parsed(value)
    return value


def _check_parsed(value: Any) -> None:
    """Declared types (no bool for an int, no NaN), and the value publishes again (JSON, UTF-8)."""
    assert _matches(value, type(value)), f"{value!r:.300} does not have its declared types"
    wire.encode_published("x", value)


def _check_decoded(name: str, value: Any) -> None:
    if name == "decode_crop":
        crop_header, pixels = value
        assert _matches(crop_header, wire.CropHeader) and pixels.shape == crop_header.shape
        assert wire.decode_crop([bytes(f) for f in wire.encode_crop(crop_header, pixels)])[0] == crop_header
        return
    topic, payload, *jpeg = value
    assert isinstance(topic, str) and isinstance(payload, dict)
    wire.encode_published("x", payload)  # a payload the bridge or the view re-sends must be valid JSON again
    topic.encode()
    for parse in VALID:  # what each consumer would make of it: a value or WireError, never anything else
        _outcome(parse, payload)


def _matches(value: Any, hint: Any) -> bool:
    """`value` has the type `hint` names: dataclasses field by field, ints not bools, floats finite."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, float) and math.isfinite(value)
    if hint is str:
        return isinstance(value, str)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in args)
    if origin is tuple:
        return isinstance(value, tuple) and len(value) == len(args) and all(map(_matches, value, args))
    if origin is list:
        return isinstance(value, list) and all(_matches(item, args[0]) for item in value)
    if origin is dict:
        return isinstance(value, dict) and all(_matches(k, args[0]) and _matches(v, args[1]) for k, v in value.items())
    if dataclasses.is_dataclass(hint):
        hints = typing.get_type_hints(hint)
        return isinstance(value, hint) and all(_matches(getattr(value, f.name), hints[f.name])
                                               for f in dataclasses.fields(hint))
    raise AssertionError(f"no type check for {hint!r}")


# ---------------------------------------------------------------- dict parsers


def _dict_inputs() -> st.SearchStrategy[tuple[str, Any]]:
    """(parser, input): arbitrary JSON values, objects with the right keys and arbitrary values, one-field mutations."""
    cases = []
    for name, payloads in VALID.items():
        for payload in payloads:
            keys = st.sampled_from(sorted(payload)) | st.text(max_size=8)
            cases += [
                st.tuples(st.just(name), json_values()),
                st.tuples(st.just(name), st.dictionaries(keys, json_values(6), max_size=12)),
                st.tuples(st.just(name), st.fixed_dictionaries({k: json_values(4) for k in payload})),
                st.tuples(st.just(name), mutated(payload)),
            ]
    nested = [  # one field of a nested object mutated: a camera's stats, a snapshot's box
        st.tuples(st.just("stats_from_dict"), mutated(VALID["stats_from_dict"][0]["cameras"]["cam"]).map(
            lambda cam: {**VALID["stats_from_dict"][0], "cameras": {"cam": cam}})),
        st.tuples(st.just("snapshot_from_dict"), mutated(VALID["snapshot_from_dict"][0]["boxes"][0]).map(
            lambda box: {**VALID["snapshot_from_dict"][0], "boxes": [box]})),
    ]
    return st.one_of(*cases, *nested)


@FUZZ
@given(case=_dict_inputs())
@example(case=("frame_notice_from_dict", {**VALID["frame_notice_from_dict"][0], "ts": 10**400}))
@example(case=("stats_from_dict", {**VALID["stats_from_dict"][1], "ocr_ms_total": 10**400}))
@example(case=("text_result_from_dict", {**VALID["text_result_from_dict"][0], "track": True}))
@example(case=("crop_image_from_dict", []))
def test_dict_parsers_return_a_value_or_wire_error(case: tuple[str, Any]) -> None:
    name, raw = case
    _outcome(name, raw)


@FUZZ
@given(name=st.sampled_from(sorted(VALID)), data=st.data())
def test_dict_parsers_allocate_a_bounded_amount(name: str, data: st.DataObject) -> None:
    """tracemalloc's peak of one parse of a one-field mutation stays under MAX_PEAK, whatever it claims."""
    raw = data.draw(mutated(data.draw(st.sampled_from(VALID[name]))))
    peak = peak_bytes(lambda: getattr(wire, name)(raw))
    assert peak < MAX_PEAK, f"{name} allocated {peak} bytes"
    _outcome(name, raw)


@pytest.mark.parametrize("name", sorted(SIZE_CLAIMS))
def test_claimed_sizes_are_refused_before_allocating(name: str) -> None:
    """A message claiming 10**9 regions, pixels or reads costs no more than MAX_PEAK to parse or refuse."""
    raw = {**VALID[name][0], **SIZE_CLAIMS[name]}
    peak = peak_bytes(lambda: getattr(wire, name)(raw))
    assert peak < MAX_PEAK, f"{name} allocated {peak} bytes"
    _outcome(name, raw)


# ---------------------------------------------------------------- byte-level decoders

TOPICS = [b"text.cam", b"stats", b"_frame.cam", b"_track.cam", b"track.cam", b"event.cam", b"frame.cam",
          b"snapshot.cam", b"crop.cam", b"snapshot.", b"crop", b"\xff\xfe", b""]
# Raw JSON spliced in as one field's value: not JSON (NaN), not finite, too long, too deep, bad escapes.
RAW_LITERALS = [b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e999", b"9" * 5000, b"9" * 4000, b"[" * 50_000,
                b"[" * 990 + b"]" * 990, b'"\\ud800"', b'"\\udc00\\ud800"', b'"\\ud83d\\ude00"', b'"\\u0000"',
                b"-0", b"1E400", b"{" * 2000, b'"' + b"\\n" * 1000 + b'"', b"true", b"null", b"[]", b"{}"]


def _json_bytes(obj: Any) -> bytes:
    """obj as JSON, NaN and all; a value too deep for json.dumps becomes an equally deep literal."""
    try:
        return json.dumps(obj, allow_nan=True).encode("utf-8", "surrogatepass")
    except (RecursionError, ValueError):
        return b"[" * 5000 + b"]" * 5000


def _spliced(payload: dict[str, Any], key: str, literal: bytes) -> bytes:
    return json.dumps({**payload, key: "@@"}).encode().replace(b'"@@"', literal, 1)


def _flipped(frames: list[bytes], where: list[tuple[int, int, int]]) -> list[bytes]:
    """frames with the byte at (frame, offset) set to value, for each of `where`."""
    out = [bytearray(f) for f in frames]
    for index, offset, value in where:
        target = out[index % len(out)]
        if target:
            target[offset % len(target)] = value
    return [bytes(f) for f in out]


def _frames_inputs() -> st.SearchStrategy[tuple[str, list[bytes]]]:
    """(decoder, frames): random frames, valid messages with bytes flipped, frames dropped or added,
    JSON headers mutated or with raw literals spliced in, and pixel buffers of the wrong size."""
    decoders = st.sampled_from(sorted(VALID_FRAMES))
    topics = st.sampled_from(TOPICS) | st.binary(max_size=16)
    payloads = [p for ps in VALID.values() for p in ps]
    any_payload = st.sampled_from(payloads).flatmap(mutated).map(_json_bytes) | json_values().map(_json_bytes)
    spliced = st.sampled_from(payloads).flatmap(
        lambda p: st.builds(_spliced, st.just(p), st.sampled_from(sorted(p)), st.sampled_from(RAW_LITERALS)))
    crop_headers = st.builds(_spliced, st.just(json.loads(VALID_FRAMES["decode_crop"][0][0])),
                             st.sampled_from(sorted(json.loads(VALID_FRAMES["decode_crop"][0][0]))),
                             st.sampled_from(RAW_LITERALS + [json.dumps(v).encode() for v in HOSTILE_VALUES[:30]
                                                             if not isinstance(v, float) or math.isfinite(v)]))
    valid = st.sampled_from([f for fs in VALID_FRAMES.values() for f in fs])
    messages = st.one_of(
        st.lists(st.binary(max_size=64), max_size=4),
        st.builds(_flipped, valid, st.lists(st.tuples(st.integers(0, 3), st.integers(0, 10**6), st.integers(0, 255)),
                                            min_size=1, max_size=4)),
        st.builds(lambda fs, n, extra: (fs + [extra] * n)[: max(0, len(fs) + n)], valid,
                  st.integers(-3, 2), st.binary(max_size=8)),
        st.builds(lambda t, p: [t, p], topics, any_payload | spliced),
        st.builds(lambda t, p, j: [t, p, j], topics, any_payload | spliced, st.sampled_from([JPEG, b"", b"\xff\xd8"])
                  | st.binary(max_size=16)),
        st.builds(lambda h, px: [h, px], any_payload | spliced | crop_headers,
                  st.sampled_from([bytes(18), bytes(6), b"", bytes(17), bytes(19)])),
    )
    return st.tuples(decoders, messages)


@FUZZ
@given(case=_frames_inputs())
@example(case=("decode_published", [b"stats", b'{"v":1,"role":' + b"[" * 990 + b"]" * 990 + b"}"]))
@example(case=("decode_published", [b"text.cam", _spliced(VALID["text_result_from_dict"][0], "camera", b'"\\ud800"')]))
@example(case=("decode_published", [b"text.cam", _spliced(VALID["text_result_from_dict"][0], "worker", b"NaN")]))
@example(case=("decode_published", [b"text.cam", _spliced(VALID["text_result_from_dict"][0], "worker", b"1e999")]))
def test_byte_decoders_return_a_value_or_wire_error(case: tuple[str, list[bytes]]) -> None:
    name, frames = case
    peak = peak_bytes(lambda: getattr(wire, name)(frames))
    assert peak < MAX_PEAK, f"{name} allocated {peak} bytes"
    _outcome(name, frames)


# ---------------------------------------------------------------- regressions the fuzzing found


def test_an_integer_beyond_a_float_is_a_wire_error() -> None:
    """Regression: "ts": 10**400 (JSON carries integers of up to 4300 digits) raised OverflowError in _float."""
    for name, field in (("frame_notice_from_dict", "ts"), ("text_result_from_dict", "confidence")):
        with pytest.raises(wire.WireError, match="not a finite number"):
            getattr(wire, name)({**VALID[name][0], field: 10**400})


def test_a_boolean_is_not_a_track_id() -> None:
    """Regression: "track": true in a text result or a crop header was taken as track 1 (bool is an int)."""
    with pytest.raises(wire.WireError):
        wire.text_result_from_dict({**VALID["text_result_from_dict"][0], "track": True})
    crop = json.loads(VALID_FRAMES["decode_crop"][0][0])
    with pytest.raises(wire.WireError):
        wire.decode_crop([json.dumps({**crop, "track": True}).encode(), VALID_FRAMES["decode_crop"][0][1]])
    assert wire.text_result_from_dict(VALID["text_result_from_dict"][1]).track == 7


def test_stats_that_are_not_an_object_are_a_wire_error() -> None:
    """Regression: stats_from_dict(None) raised AttributeError ('NoneType' has no attribute 'get')."""
    for raw in (None, [], "stats", 1):
        with pytest.raises(wire.WireError, match="not an object"):
            wire.stats_from_dict(raw)


@pytest.mark.parametrize(("name", "raw"), [
    ("decode_published", [b"stats", b'{"v":' + b"9" * 4000 + b"}"]),
    ("stats_from_dict", {**VALID["stats_from_dict"][0], "crops_dropped": {"x" * 100_000: -1}}),
    ("track_event_from_dict", {**VALID["track_event_from_dict"][0], "event": "x" * 100_000}),
    ("stats_from_dict", {"role": DEEP_LIST}),
])
def test_an_error_shows_the_senders_values_bounded(name: str, raw: Any) -> None:
    """Regression: errors echoed a sender's values whole into the log line (a 4000-digit schema version,
    a 100 kB map key or event), and a 5000-deep list as role raised RecursionError in repr."""
    with pytest.raises(wire.WireError) as err:
        getattr(wire, name)(raw)
    assert len(str(err.value)) <= MAX_ERROR and "\n" not in str(err.value)


@pytest.mark.parametrize("literal", [b"NaN", b"-Infinity", b"1e999", b'"\\ud800"', b'"\\udc00x"'])
def test_json_that_cannot_be_sent_again_is_refused(literal: bytes) -> None:
    """Regression: NaN/Infinity literals, 1e999 and lone surrogate escapes were accepted by decode_published;
    the payload could not be encoded again (ValueError from json.dumps, UnicodeEncodeError from .encode())."""
    with pytest.raises(wire.WireError, match="not UTF-8 JSON"):
        wire.decode_published([b"text.cam", _spliced(VALID["text_result_from_dict"][0], "worker", literal)])


def test_a_surrogate_pair_escape_is_still_accepted() -> None:
    """A non-Python sender may escape characters outside the BMP as a pair; that is valid JSON and stays so."""
    frames = [b"text.cam", _spliced(VALID["text_result_from_dict"][0], "text", b'"\\ud83d\\ude00"')]
    assert wire.text_result_from_dict(wire.decode_published(frames)[1]).text == "\U0001f600"
