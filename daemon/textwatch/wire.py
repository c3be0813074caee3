"""The wire format: every message textwatch puts on a ZeroMQ socket, schema version 1.

This module is the only place that builds or parses frames; docs/protocol.md
describes the same protocol for subscribers written in other languages.

Internal (detect process -> OCR workers, PUSH/PULL):
    crop    multipart [header JSON, raw pixels]. The header names the frame
            (camera, seq, ts), the region (index, count, box, detector
            confidence) and the pixel layout (dtype, shape). Pixels are C-order
            uint8 HxWx3 BGR. No pickle: nothing unpickles what comes off a socket.

Published (workers/detect/aggregator PUB -> XSUB/XPUB proxy -> subscribers):
    [topic, JSON] with topics
    text.<camera>   one read region
    frame.<camera>  all regions of one frame, once all are read or timed out
    event.<camera>  source_up / source_down (and why)
    stats           a process's counters, every few seconds
    track.<camera>  a tracked region appeared, its consolidated text changed, or it is gone

Internal (detect -> publisher only, never forwarded to subscribers):
    _track.<camera> TrackNotice: a track appeared or is gone, from the tracker;
                    the publisher turns it into track.<camera> with the text
                    consolidated from the track's reads.
    _frame.<camera> FrameNotice: detect sent this frame's crops to the pool; the
                    publisher expects their results, so a frame whose every
                    crop was lost (a killed worker) is still counted and
                    published as incomplete instead of vanishing.

Every JSON object carries "v": 1. Parsing is strict: a frame that is not valid
UTF-8 JSON of the right shape raises `WireError` (the receiver counts it as
rejected and goes on); unknown extra fields are kept, so v1 can grow.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

SCHEMA_VERSION = 1
MAX_CROP_PIXELS = 4096 * 4096  # refuse headers that would make us allocate absurd buffers
TOPIC_TEXT, TOPIC_FRAME, TOPIC_EVENT, TOPIC_STATS = "text", "frame", "event", "stats"
TOPIC_TRACK = "track"
TOPIC_TRACK_NOTICE = "_track"  # internal: the publisher consumes it
TOPIC_FRAME_NOTICE = "_frame"  # internal: the publisher consumes it


class WireError(ValueError):
    """A message that does not follow the protocol."""


@dataclass(frozen=True)
class CropHeader:
    """Everything a worker needs to read one region and report it."""

    camera: str
    seq: int  # frame sequence number within the camera, from 0
    ts: float  # capture time, UNIX seconds
    region: int  # index of this region within its frame
    regions: int  # number of regions detected in the frame
    box: tuple[int, int, int, int]  # x1, y1, x2, y2 in frame pixels
    confidence: float  # detector confidence
    text_height: float  # estimated text height in crop pixels
    shape: tuple[int, int, int]  # crop height, width, channels
    dtype: str = "uint8"
    track: int | None = None
    v: int = SCHEMA_VERSION


@dataclass(frozen=True)
class TextResult:
    """One read region, as published on text.<camera>."""

    camera: str
    seq: int
    ts: float
    region: int
    regions: int
    box: tuple[int, int, int, int]
    confidence: float
    status: str  # "text" | "empty" | "failed"
    text: str
    ocr_confidence: float
    worker: str
    latency_ms: float  # capture to publish
    track: int | None = None
    error: str | None = None
    v: int = SCHEMA_VERSION


@dataclass(frozen=True)
class FrameResult:
    """All regions of one frame (frame.<camera>): a consistent snapshot for subscribers."""

    camera: str
    seq: int
    ts: float
    regions: list[dict[str, Any]]  # TextResult dicts, by region index
    missing: list[int] = field(default_factory=list)  # region indices not read before the deadline
    complete: bool = True
    latency_ms: float = 0.0
    v: int = SCHEMA_VERSION


@dataclass(frozen=True)
class SourceEvent:
    """event.<camera>: a source went up or down; `source` is the redacted URL."""

    camera: str
    event: str  # "source_up" | "source_down"
    source: str
    reason: str
    ts: float
    v: int = SCHEMA_VERSION


@dataclass(frozen=True)
class TrackNotice:
    """Internal (_track.<camera>): the tracker saw a track appear or go."""

    camera: str
    track: int
    event: str  # "appeared" | "gone"
    seq: int  # frame of the event
    ts: float
    box: tuple[int, int, int, int]  # latest box, frame pixels
    first_seq: int
    first_ts: float
    last_seq: int
    last_ts: float
    reason: str = ""  # gone: "missed" | "aged" | "finished"
    v: int = SCHEMA_VERSION


@dataclass(frozen=True)
class TrackEvent:
    """track.<camera>: one answer per text region, from appearance to disappearance."""

    camera: str
    track: int
    event: str  # "appeared" | "changed" | "gone"
    ts: float  # when the event happened (capture time of its frame, or of the read)
    box: tuple[int, int, int, int] | None
    text: str  # consolidated text so far ("" until a read voted)
    confidence: float  # OCR confidence of the winning read, 0..100
    reads: int  # reads of this track so far
    first_seq: int
    first_ts: float
    last_seq: int
    last_ts: float
    reason: str = ""
    v: int = SCHEMA_VERSION


@dataclass(frozen=True)
class FrameNotice:
    """Internal (_frame.<camera>): detect planned `regions` crops of this frame and handed `sent` to the pool."""

    camera: str
    seq: int
    ts: float
    regions: int
    sent: int  # the rest the full pool refused (detect's crops_dropped.queue_full)
    v: int = SCHEMA_VERSION


def frame_notice_from_dict(raw: dict[str, Any]) -> FrameNotice:
    try:
        notice = FrameNotice(
            camera=_str(raw, "camera"), seq=_int(raw, "seq"), ts=_float(raw, "ts"),
            regions=_int(raw, "regions"), sent=_int(raw, "sent"),
        )
    except (KeyError, TypeError) as err:
        raise WireError(f"frame notice field missing or mistyped: {err}") from None
    if not 0 <= notice.sent <= notice.regions or notice.regions < 1:
        raise WireError(f"frame notice with {notice.sent} of {notice.regions} regions sent")
    return notice


def track_notice_from_dict(raw: dict[str, Any]) -> TrackNotice:
    try:
        notice = TrackNotice(
            camera=_str(raw, "camera"),
            track=_int(raw, "track"),
            event=_str(raw, "event"),
            seq=_int(raw, "seq"),
            ts=_float(raw, "ts"),
            box=_ints(raw, "box", 4),
            first_seq=_int(raw, "first_seq"),
            first_ts=_float(raw, "first_ts"),
            last_seq=_int(raw, "last_seq"),
            last_ts=_float(raw, "last_ts"),
            reason=_str(raw, "reason"),
        )
    except (KeyError, TypeError) as err:
        raise WireError(f"track notice field missing or mistyped: {err}") from None
    if notice.event not in ("appeared", "gone"):
        raise WireError(f"track notice event {notice.event!r}")
    return notice


# ---------------------------------------------------------------- crops


def encode_crop(header: CropHeader, pixels: np.ndarray) -> list[bytes | memoryview]:
    """[header JSON, pixel bytes]; the pixels go as a buffer, without a copy."""
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    if tuple(pixels.shape) != tuple(header.shape):
        raise WireError(f"crop shape {pixels.shape} differs from header shape {header.shape}")
    return [_dumps(asdict(header)), memoryview(pixels).cast("B")]


def decode_crop(frames: list[bytes]) -> tuple[CropHeader, np.ndarray]:
    """Parse a crop message; raise WireError on anything malformed."""
    if len(frames) != 2:
        raise WireError(f"crop message has {len(frames)} frames, expected 2")
    raw = _loads(frames[0])
    try:
        header = CropHeader(
            camera=_str(raw, "camera"),
            seq=_int(raw, "seq"),
            ts=_float(raw, "ts"),
            region=_int(raw, "region"),
            regions=_int(raw, "regions"),
            box=_ints(raw, "box", 4),
            confidence=_float(raw, "confidence"),
            text_height=_float(raw, "text_height"),
            shape=_ints(raw, "shape", 3),
            dtype=_str(raw, "dtype"),
            track=raw.get("track") if isinstance(raw.get("track"), int) else None,
            v=_int(raw, "v"),
        )
    except (KeyError, TypeError) as err:
        raise WireError(f"crop header field missing or mistyped: {err}") from None
    _check_crop(header, len(frames[1]))
    pixels = np.frombuffer(frames[1], dtype=np.uint8).reshape(header.shape)
    return header, pixels


def _check_crop(header: CropHeader, size: int) -> None:
    if header.v != SCHEMA_VERSION:
        raise WireError(f"crop schema version {header.v}, expected {SCHEMA_VERSION}")
    if header.dtype != "uint8":
        raise WireError(f"crop dtype {header.dtype!r}, expected 'uint8'")
    h, w, c = header.shape
    if h < 1 or w < 1 or c not in (1, 3) or h * w > MAX_CROP_PIXELS:
        raise WireError(f"crop shape {header.shape} out of bounds")
    if h * w * c != size:
        raise WireError(f"crop has {size} bytes, header shape {header.shape} needs {h * w * c}")
    if not 0 <= header.region < max(1, header.regions):
        raise WireError(f"region {header.region} outside 0..{header.regions - 1}")


# ---------------------------------------------------------------- published results


def topic(kind: str, camera: str | None = None) -> str:
    return kind if camera is None else f"{kind}.{camera}"


def encode_published(kind: str, payload: Any, camera: str | None = None) -> list[bytes]:
    """[topic, JSON] for text/frame/event (a dataclass) or stats (a dict)."""
    body = asdict(payload) if hasattr(payload, "__dataclass_fields__") else dict(payload)
    body.setdefault("v", SCHEMA_VERSION)
    return [topic(kind, camera).encode(), _dumps(body)]


def decode_published(frames: list[bytes]) -> tuple[str, dict[str, Any]]:
    """(topic, payload dict) of a published message; raise WireError if malformed."""
    if len(frames) != 2:
        raise WireError(f"published message has {len(frames)} frames, expected 2")
    try:
        name = frames[0].decode("utf-8")
    except UnicodeDecodeError:
        raise WireError("topic is not UTF-8") from None
    payload = _loads(frames[1])
    if payload.get("v") != SCHEMA_VERSION:
        raise WireError(f"schema version {payload.get('v')!r}, expected {SCHEMA_VERSION}")
    return name, payload


def text_result_from_dict(raw: dict[str, Any]) -> TextResult:
    """Rebuild a TextResult from a published payload (the aggregator needs typed fields)."""
    try:
        return TextResult(
            camera=_str(raw, "camera"),
            seq=_int(raw, "seq"),
            ts=_float(raw, "ts"),
            region=_int(raw, "region"),
            regions=_int(raw, "regions"),
            box=_ints(raw, "box", 4),
            confidence=_float(raw, "confidence"),
            status=_str(raw, "status"),
            text=_str(raw, "text"),
            ocr_confidence=_float(raw, "ocr_confidence"),
            worker=_str(raw, "worker"),
            latency_ms=_float(raw, "latency_ms"),
            track=raw.get("track") if isinstance(raw.get("track"), int) else None,
            error=raw.get("error") if isinstance(raw.get("error"), str) else None,
        )
    except (KeyError, TypeError) as err:
        raise WireError(f"text result field missing or mistyped: {err}") from None


# ---------------------------------------------------------------- helpers


def _dumps(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def _loads(data: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(bytes(data).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        # ValueError covers JSONDecodeError and Python's int-digits limit (an integer
        # literal of more than 4300 digits raises a bare ValueError).
        raise WireError("not UTF-8 JSON") from None
    if not isinstance(obj, dict):
        raise WireError("JSON payload is not an object")
    return obj


def _str(raw: dict[str, Any], key: str) -> str:
    value = raw[key]
    if not isinstance(value, str):
        raise TypeError(f"{key} is not a string")
    return value


def _int(raw: dict[str, Any], key: str) -> int:
    value = raw[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{key} is not an integer")
    return value


def _float(raw: dict[str, Any], key: str) -> float:
    value = raw[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TypeError(f"{key} is not a finite number")
    return float(value)


def _ints(raw: dict[str, Any], key: str, count: int) -> tuple[int, ...]:
    value = raw[key]
    if not isinstance(value, list) or len(value) != count or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        raise TypeError(f"{key} is not a list of {count} integers")
    return tuple(value)
