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
    stats           a process's counters, every few seconds: DetectStats,
                    WorkerStats or PublisherStats by its "role"; cumulative
                    since the process `started` (a restart starts them again)
    track.<camera>  a tracked region appeared, its consolidated text changed, or it is gone
    snapshot.<camera>  [topic, JSON header, JPEG]: the newest frame and its boxes, at most
                    media.snapshot_fps per camera (the live view)
    crop.<camera>   [topic, JSON header, JPEG]: the crop of a tracked region sent to OCR, at
                    most media.crop_fps per camera (the history's picture of each track)

Internal (detect -> publisher only, never forwarded to subscribers):
    _track.<camera> TrackNotice: a track appeared or is gone, from the tracker;
                    the publisher turns it into track.<camera> with the text
                    consolidated from the track's reads.
    _frame.<camera> FrameNotice: detect sent this frame's crops to the pool; the
                    publisher expects their results, so a frame whose every
                    crop was lost (a killed worker) is still counted and
                    published as incomplete instead of vanishing.

MQTT (the bridge, processes/mqtt.py -> a broker; docs/mqtt.md): the JSON payloads
    of <topic_prefix>/<camera>/text (MqttTrackText), <camera>/state
    (MqttCameraState) and <camera>/events (SourceEvent) are defined here too;
    the bridge's counters are MqttStats on the bus's stats topic.

Every JSON object carries "v": 1. Parsing is strict: a frame that is not valid
UTF-8 JSON of the right shape raises `WireError` (the receiver counts it as
rejected and goes on); unknown extra fields are kept, so v1 can grow.
"""

from __future__ import annotations

import json
import math
import reprlib
from dataclasses import asdict, dataclass, field, is_dataclass
from typing import Any

import numpy as np

SCHEMA_VERSION = 1
MAX_CROP_PIXELS = 4096 * 4096  # refuse headers that would make us allocate absurd buffers
# Regions of one frame, as any message may claim them: the publisher allocates per claimed region
# (a frame's `missing` list), so the claim is bounded before anything is built on it.
MAX_REGIONS = 10_000
OCR_ENGINES = ("tesserocr", "pytesseract", "ppocr")  # a crop may name one (config.Engine, the same names)
MAX_CHARSET = 512  # characters of a crop's charset (config's filters.charset bound)
TOPIC_TEXT, TOPIC_FRAME, TOPIC_EVENT, TOPIC_STATS = "text", "frame", "event", "stats"
TOPIC_TRACK = "track"
TOPIC_TRACK_NOTICE = "_track"  # internal: the publisher consumes it
TOPIC_FRAME_NOTICE = "_frame"  # internal: the publisher consumes it
TOPIC_SNAPSHOT, TOPIC_CROP = "snapshot", "crop"  # media: [topic, JSON header, JPEG]
MEDIA_TOPICS = (TOPIC_SNAPSHOT, TOPIC_CROP)
# The longest topic there is: the longest kind, ".", a camera id of at most 64 characters
# (config.CameraSettings.id). The publisher's XPUB refuses longer subscriptions (bus.py).
MAX_TOPIC_BYTES = 80
# Set by the publisher on every message it publishes: a per-topic counter from 0 at its start, so a
# subscriber sees a gap (messages lost for it) as a jump, and a publisher restart as a step back.
TOPIC_SEQ = "topic_seq"
MAX_JPEG_BYTES = 4 * 1024 * 1024  # a media message's picture; bus.MAX_RESULT_BYTES bounds the whole message too
MAX_MEDIA_BOXES = 256  # boxes a snapshot header lists (more are left out by the sender)


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
    engine: str | None = None  # the camera's OCR engine (cameras.ocr_engine); None = the worker's ocr.engine
    charset: str = ""  # the only characters to read (the camera's filters.charset); "" = any
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
    if not 0 <= notice.sent <= notice.regions or not 1 <= notice.regions <= MAX_REGIONS:
        # Regression: a 118-byte notice claiming 20,000,000 regions took the publisher to 1 GB
        # and published a 189 MB frame.<camera> of "missing" regions to every subscriber.
        raise WireError(f"frame notice with {_shown(notice.sent)} of {_shown(notice.regions)} regions sent (at most {MAX_REGIONS})")
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
        raise WireError(f"track notice event {_shown(notice.event)}")
    return notice


# ---------------------------------------------------------------- stats


@dataclass(frozen=True)
class CameraStats:
    """One camera's counters in detect's stats (the reader's CaptureCounters plus crops sent)."""

    frames_read: int
    frames_skipped: int  # replaced by a newer frame before detect took them, or over max_fps
    frames_delivered: int  # taken by detect
    reconnects: int
    stalls: int
    read_errors: int
    up: bool  # the source delivers frames now
    crops_sent: int


@dataclass(frozen=True)
class DetectStats:
    """stats from the capture+detect process."""

    process: str
    ts: float
    frames: int  # frames through the detector
    batches: int  # batched forwards
    detect_ms_total: float
    detect_ms_avg: float  # per batched forward, since start
    crops_sent: int
    crops_dropped: dict[str, int]  # by reason: queue_full, events_full, publish_full
    cameras: dict[str, CameraStats]
    ocr_skipped: dict[str, int]  # regions the tracker's schedule did not send, by reason
    regions_ignored: dict[str, int]  # regions the camera's filters dropped, by reason
    started: float | None = None  # UNIX seconds; absent from processes that do not say
    rss_bytes: int | None = None  # absent where unknown (no /proc)
    role: str = "detect"
    v: int = SCHEMA_VERSION
    # the change gate (detect/gate.py): frames_detected, frames_carried, frames_full, views_detected,
    # views_carried, views_refreshed, roi_empty; absent ({}) from a detect process that predates it
    gate: dict[str, int] = field(default_factory=dict)
    cpu_ms_total: float = 0.0  # CPU time of the whole detect process (all its threads), ms
    # pictures for the view and the history not made over their rate (media.py), by reason:
    # snapshot_rate, crop_picture_rate. Not crops: OCR never missed anything for them.
    media_skipped: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class WorkerStats:
    """stats from an OCR worker (local ocr-N or a remote one)."""

    process: str
    ts: float
    crops_read: int  # text + empty + failed
    text: int
    empty: int
    failed: int
    timeouts: int  # failed readings abandoned at ocr.timeout_ms (also in failed)
    rejected: int  # messages that were not valid crops
    ocr_ms_total: float
    started: float | None = None
    rss_bytes: int | None = None
    role: str = "worker"
    v: int = SCHEMA_VERSION
    stale: int = 0  # crops skipped as older than pipeline.crop_max_age_s (also in failed); absent from older workers


@dataclass(frozen=True)
class PublisherStats:
    """stats from the publisher: the proxy's and the frame aggregator's counters."""

    process: str
    ts: float
    forwarded: int  # producer messages passed to subscribers
    rejected: int  # malformed producer messages, dropped
    subscriptions: int  # subscribe/unsubscribe messages passed upstream
    frames: int  # frames published complete
    frames_incomplete: int  # published at their deadline with regions missing
    frames_evicted: int  # published early, incomplete, when too many were pending
    frames_duplicates: int  # a region that arrived twice
    frames_late: int  # a region whose frame was already published
    frames_lost: int  # frames sent to the pool none of whose regions came back
    regions_missing: int  # regions of published frames never read
    frames_pending: int  # gauge: frames being collected
    tracks_live: int  # gauge: tracks the TrackBook holds
    started: float | None = None
    rss_bytes: int | None = None
    refused: dict[str, int] = field(default_factory=dict)  # well-formed but not allowed on its socket, by reason
    subscriptions_active: int = 0  # gauge: distinct topic prefixes subscribers hold
    results_held: int = 0  # gauge: remote results waiting for their frame's notice
    subscriber_resets: int = 0  # every subscriber dropped at once: too many subscriptions held
    role: str = "publisher"
    v: int = SCHEMA_VERSION


@dataclass(frozen=True)
class HistoryStats:
    """stats from the history store (processes/history.py)."""

    process: str
    ts: float
    tracks_written: int  # track events written (a track's row inserted or updated)
    crops_written: int  # crop pictures stored with their track
    crops_dropped: int  # crop pictures of tracks that never got a text, or beyond the pending bound
    deleted_age: int  # tracks deleted by history.retention_days
    deleted_size: int  # tracks deleted by history.retention_mb (oldest first)
    rejected: int  # malformed messages
    rows: int  # gauge: tracks in the database
    db_bytes: int  # gauge: bytes in use in the database
    started: float | None = None
    rss_bytes: int | None = None
    role: str = "history"
    v: int = SCHEMA_VERSION


@dataclass(frozen=True)
class MqttStats:
    """stats from the MQTT bridge: bus messages in, MQTT messages out, and every message dropped, by reason."""

    process: str
    ts: float
    received: int  # bus messages taken (track, event, stats)
    rejected: int  # bus messages that were not valid, dropped
    published: int  # MQTT messages handed to the broker connection
    dropped: dict[str, int]  # by reason: queue_full (the oldest, while the broker was away or slow), refused
    queued: int  # gauge: MQTT messages waiting for the broker
    connects: int  # connections the broker accepted (the first and every reconnect)
    disconnects: int  # connections lost
    connected: bool  # gauge: connected to the broker now
    started: float | None = None
    rss_bytes: int | None = None
    role: str = "mqtt"
    v: int = SCHEMA_VERSION


@dataclass(frozen=True)
class ChildCounts:
    """One child's history as the supervisor counts it: the supervisor outlives every child,
    so these survive any child's restart (the publisher's, which hosts the metrics, included)."""

    starts: int  # spawns, the first one included
    restarts: int  # replacements after a failure (a crash, a kill, a hang): what the restart budget counts
    hung: int  # killed for no progress past pipeline.hung_s (start_timeout_s while starting); also in restarts
    recycled: int  # planned replacements of a worker (worker_max_crops, RSS growth): not failures
    timed_out: int  # workers that ended themselves past a crop's ocr.timeout_ms deadline: not failures


@dataclass(frozen=True)
class SupervisorStats:
    """stats from the supervisor (`textwatch run`): every child's starts, restarts, hangs, every stats_interval_s."""

    process: str  # "supervisor"
    ts: float
    children: dict[str, ChildCounts]  # by child name: publisher, ocr-0, detect-0, ...
    started: float | None = None
    rss_bytes: int | None = None
    role: str = "supervisor"
    v: int = SCHEMA_VERSION


Stats = DetectStats | WorkerStats | PublisherStats | HistoryStats | MqttStats | SupervisorStats


def stats_payload(stats: Stats) -> dict[str, Any]:
    """The JSON object of a stats message: `started` and `rss_bytes` are left out where unknown."""
    return {k: v for k, v in asdict(stats).items() if not (k in ("started", "rss_bytes") and v is None)}


def stats_from_dict(raw: dict[str, Any]) -> Stats:
    """A stats message's typed form by its role; WireError for an unknown role or a bad field.

    Counters must be non-negative: the metrics exporter mirrors them into
    Prometheus counters, which only go up.
    """
    if not isinstance(raw, dict):  # Regression (fuzzing): a non-object raised AttributeError, not WireError
        raise WireError("stats payload is not an object")
    role = raw.get("role")
    try:
        common = {"process": _str(raw, "process"), "ts": _float(raw, "ts"),
                  "started": _optional(raw, "started", _float), "rss_bytes": _optional(raw, "rss_bytes", _count)}
        if role == "detect":
            return DetectStats(
                **common, **_counts_of(raw, DETECT_COUNTS), detect_ms_total=_amount(raw, "detect_ms_total"),
                detect_ms_avg=_amount(raw, "detect_ms_avg"), crops_dropped=_count_map(raw, "crops_dropped"),
                cameras={camera: _camera_stats(value) for camera, value in _map(raw, "cameras").items()},
                ocr_skipped=_count_map(raw, "ocr_skipped"), regions_ignored=_count_map(raw, "regions_ignored"),
                gate=_count_map(raw, "gate") if "gate" in raw else {},
                cpu_ms_total=_amount(raw, "cpu_ms_total") if "cpu_ms_total" in raw else 0.0,
                media_skipped=_count_map(raw, "media_skipped") if "media_skipped" in raw else {},
            )
        if role == "worker":
            stale = _count(raw, "stale") if "stale" in raw else 0
            return WorkerStats(
                **common, **_counts_of(raw, WORKER_COUNTS), ocr_ms_total=_amount(raw, "ocr_ms_total"), stale=stale
            )
        if role == "publisher":
            return PublisherStats(
                **common, **_counts_of(raw, PUBLISHER_COUNTS),
                refused=_count_map(raw, "refused") if "refused" in raw else {},
                subscriptions_active=_count(raw, "subscriptions_active") if "subscriptions_active" in raw else 0,
                results_held=_count(raw, "results_held") if "results_held" in raw else 0,
                subscriber_resets=_count(raw, "subscriber_resets") if "subscriber_resets" in raw else 0,
            )
        if role == "history":
            return HistoryStats(**common, **_counts_of(raw, HISTORY_COUNTS))
        if role == "mqtt":
            connected = raw["connected"]
            if not isinstance(connected, bool):
                raise TypeError("connected is not a boolean")
            return MqttStats(
                **common, **_counts_of(raw, MQTT_COUNTS), dropped=_count_map(raw, "dropped"), connected=connected
            )
        if role == "supervisor":
            return SupervisorStats(**common, children=_children(raw))
    except (KeyError, TypeError) as err:
        raise WireError(f"{_shown(role)} stats field missing or mistyped: {err}") from None
    raise WireError(f"stats of unknown role {_shown(role)}")


DETECT_COUNTS = ("frames", "batches", "crops_sent")
WORKER_COUNTS = ("crops_read", "text", "empty", "failed", "timeouts", "rejected")
PUBLISHER_COUNTS = (
    "forwarded", "rejected", "subscriptions", "frames", "frames_incomplete", "frames_evicted", "frames_duplicates",
    "frames_late", "frames_lost", "regions_missing", "frames_pending", "tracks_live",
)
HISTORY_COUNTS = (
    "tracks_written", "crops_written", "crops_dropped", "deleted_age", "deleted_size", "rejected", "rows", "db_bytes",
)
MQTT_COUNTS = ("received", "rejected", "published", "queued", "connects", "disconnects")
CAMERA_COUNTS = ("frames_read", "frames_skipped", "frames_delivered", "reconnects", "stalls", "read_errors", "crops_sent")


CHILD_COUNTS = ("starts", "restarts", "hung", "recycled", "timed_out")
MAX_CHILDREN = 1024  # children in one supervisor stats message (bus.local_workers is at most 256)


def _children(raw: dict[str, Any]) -> dict[str, ChildCounts]:
    children = _map(raw, "children")
    if len(children) > MAX_CHILDREN:
        raise TypeError(f"{len(children)} children, more than {MAX_CHILDREN}")
    counts = {}
    for name, value in children.items():
        if not isinstance(value, dict):
            raise TypeError(f"child {name!r} is not an object")
        counts[name] = ChildCounts(**_counts_of(value, CHILD_COUNTS))
    return counts


def _camera_stats(raw: Any) -> CameraStats:
    if not isinstance(raw, dict):
        raise TypeError("a camera's stats are not an object")
    up = raw["up"]
    if not isinstance(up, bool):
        raise TypeError("up is not a boolean")
    return CameraStats(**_counts_of(raw, CAMERA_COUNTS), up=up)


def _counts_of(raw: dict[str, Any], keys: tuple[str, ...]) -> dict[str, int]:
    return {key: _count(raw, key) for key in keys}


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
            track=_optional(raw, "track", _int),  # Regression (fuzzing): "track": true was taken as track 1
            engine=_optional(raw, "engine", _str),
            charset=_str(raw, "charset") if "charset" in raw else "",
            v=_int(raw, "v"),
        )
    except (KeyError, TypeError) as err:
        raise WireError(f"crop header field missing or mistyped: {err}") from None
    _check_crop(header, len(frames[1]))
    pixels = np.frombuffer(frames[1], dtype=np.uint8).reshape(header.shape)
    return header, pixels


def _check_crop(header: CropHeader, size: int) -> None:
    if header.v != SCHEMA_VERSION:
        raise WireError(f"crop schema version {_shown(header.v)}, expected {SCHEMA_VERSION}")
    if header.dtype != "uint8":
        raise WireError(f"crop dtype {_shown(header.dtype)}, expected 'uint8'")
    h, w, c = header.shape
    if h < 1 or w < 1 or c not in (1, 3) or h * w > MAX_CROP_PIXELS:
        raise WireError(f"crop shape {_shown(header.shape)} out of bounds")
    if h * w * c != size:
        raise WireError(f"crop has {size} bytes, header shape {header.shape} needs {h * w * c}")
    if not 0 <= header.region < max(1, header.regions) or header.regions > MAX_REGIONS:
        raise WireError(f"region {_shown(header.region)} of {_shown(header.regions)} out of range (at most {MAX_REGIONS} regions)")
    if header.engine is not None and header.engine not in OCR_ENGINES:
        raise WireError(f"crop engine {_shown(header.engine)} is none of {', '.join(OCR_ENGINES)}")
    if len(header.charset) > MAX_CHARSET:
        raise WireError(f"crop charset of {len(header.charset)} characters (at most {MAX_CHARSET})")


# ---------------------------------------------------------------- published results


def topic(kind: str, camera: str | None = None) -> str:
    return kind if camera is None else f"{kind}.{camera}"


def encode_published(kind: str, payload: Any, camera: str | None = None, topic_seq: int | None = None) -> list[bytes]:
    """[topic, JSON] of a message dataclass (text, frame, event, track, stats, the internal notices),
    or of a plain dict (tools and tests putting their own topics on a bus); "v" is always set,
    `topic_seq` when given (the publisher's stamp)."""
    if isinstance(payload, Stats):
        body = stats_payload(payload)
    else:
        body = asdict(payload) if is_dataclass(payload) else dict(payload)
    body.setdefault("v", SCHEMA_VERSION)
    if topic_seq is not None:
        body[TOPIC_SEQ] = topic_seq
    return [topic(kind, camera).encode(), _dumps(body)]


def with_topic_seq(frames: list[bytes], payload: dict[str, Any], seq: int) -> list[bytes]:
    """The same published message with `topic_seq` set in its JSON part (a media message keeps its
    JPEG): the publisher's stamp on everything it sends, its own messages and forwarded ones alike."""
    return [frames[0], _dumps({**payload, TOPIC_SEQ: seq}), *frames[2:]]


def decode_published(frames: list[bytes]) -> tuple[str, dict[str, Any]]:
    """(topic, payload dict) of a published message; raise WireError if malformed.

    A media message (snapshot.<camera>, crop.<camera>) has a third frame, its JPEG:
    it is checked and left out here, so a reader of [topic, JSON] sees its header
    like any other payload (`decode_media` returns the picture too).
    """
    if len(frames) == 3:
        name, header, _ = decode_media(frames)
        return name, header
    if len(frames) != 2:
        raise WireError(f"published message has {len(frames)} frames, expected 2")
    try:
        name = frames[0].decode("utf-8")
    except UnicodeDecodeError:
        raise WireError("topic is not UTF-8") from None
    payload = _loads(frames[1])
    if payload.get("v") != SCHEMA_VERSION:
        raise WireError(f"schema version {_shown(payload.get('v'))}, expected {SCHEMA_VERSION}")
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
            track=_optional(raw, "track", _int),  # Regression (fuzzing): "track": true was taken as track 1
            error=raw.get("error") if isinstance(raw.get("error"), str) else None,
        )
    except (KeyError, TypeError) as err:
        raise WireError(f"text result field missing or mistyped: {err}") from None


# ---------------------------------------------------------------- media: pictures for the view and the history


@dataclass(frozen=True)
class MediaBox:
    """One detected region drawn on a snapshot: its box in frame pixels and its track, when known."""

    box: tuple[int, int, int, int]
    track: int | None = None


@dataclass(frozen=True)
class SnapshotHeader:
    """snapshot.<camera>: the newest frame of a camera (JPEG, maybe scaled) and the boxes detected in it."""

    camera: str
    seq: int
    ts: float
    width: int  # frame size in pixels; boxes are in these pixels, whatever the JPEG's size
    height: int
    boxes: list[dict[str, Any]]  # MediaBox dicts
    v: int = SCHEMA_VERSION


@dataclass(frozen=True)
class CropImageHeader:
    """crop.<camera>: the crop of one tracked region as it was sent to OCR (JPEG)."""

    camera: str
    seq: int
    ts: float
    track: int
    box: tuple[int, int, int, int]
    v: int = SCHEMA_VERSION


def encode_media(kind: str, header: SnapshotHeader | CropImageHeader, jpeg: bytes) -> list[bytes]:
    """[topic, header JSON, JPEG] of a snapshot or crop picture."""
    if kind not in MEDIA_TOPICS:
        raise WireError(f"{kind!r} is not a media topic")
    if len(jpeg) > MAX_JPEG_BYTES:
        raise WireError(f"JPEG of {len(jpeg)} bytes (at most {MAX_JPEG_BYTES})")
    return [topic(kind, header.camera).encode(), _dumps(asdict(header)), bytes(jpeg)]


def decode_media(frames: list[bytes]) -> tuple[str, dict[str, Any], bytes]:
    """(topic, header dict, JPEG bytes) of a media message; WireError if malformed."""
    if len(frames) != 3:
        raise WireError(f"media message has {len(frames)} frames, expected 3")
    try:
        name = bytes(frames[0]).decode("utf-8")
    except UnicodeDecodeError:
        raise WireError("topic is not UTF-8") from None
    kind = name.split(".", 1)[0]
    if kind not in MEDIA_TOPICS:
        raise WireError(f"three-frame message on topic {_shown(name)}, which is not a media topic")
    header = _loads(frames[1])
    if header.get("v") != SCHEMA_VERSION:
        raise WireError(f"schema version {_shown(header.get('v'))}, expected {SCHEMA_VERSION}")
    jpeg = bytes(frames[2])
    if len(jpeg) > MAX_JPEG_BYTES or not jpeg.startswith(b"\xff\xd8"):
        raise WireError(f"{kind} picture is not a JPEG of at most {MAX_JPEG_BYTES} bytes")
    parsed = snapshot_from_dict(header) if kind == TOPIC_SNAPSHOT else crop_image_from_dict(header)
    if name != topic(kind, parsed.camera):
        raise WireError(f"topic {_shown(name)} does not match camera {_shown(parsed.camera)}")
    return name, header, jpeg


def snapshot_from_dict(raw: dict[str, Any]) -> SnapshotHeader:
    try:
        boxes = raw["boxes"]
        if not isinstance(boxes, list) or len(boxes) > MAX_MEDIA_BOXES:
            raise TypeError(f"boxes is not a list of at most {MAX_MEDIA_BOXES}")
        parsed = [asdict(MediaBox(box=_ints(b, "box", 4), track=_optional(b, "track", _int))) for b in boxes
                  if isinstance(b, dict)]
        if len(parsed) != len(boxes):
            raise TypeError("a box is not an object")
        header = SnapshotHeader(camera=_str(raw, "camera"), seq=_int(raw, "seq"), ts=_float(raw, "ts"),
                                width=_count(raw, "width"), height=_count(raw, "height"), boxes=parsed)
    except (KeyError, TypeError) as err:
        raise WireError(f"snapshot header field missing or mistyped: {err}") from None
    return header


def crop_image_from_dict(raw: dict[str, Any]) -> CropImageHeader:
    try:
        return CropImageHeader(camera=_str(raw, "camera"), seq=_int(raw, "seq"), ts=_float(raw, "ts"),
                               track=_int(raw, "track"), box=_ints(raw, "box", 4))
    except (KeyError, TypeError) as err:
        raise WireError(f"crop picture header field missing or mistyped: {err}") from None


def track_event_from_dict(raw: dict[str, Any]) -> TrackEvent:
    """A track.<camera> payload, typed (the history store and the view keep them)."""
    try:
        event = TrackEvent(
            camera=_str(raw, "camera"), track=_int(raw, "track"), event=_str(raw, "event"), ts=_float(raw, "ts"),
            box=_ints(raw, "box", 4) if raw.get("box") is not None else None, text=_str(raw, "text"),
            confidence=_float(raw, "confidence"), reads=_count(raw, "reads"), first_seq=_int(raw, "first_seq"),
            first_ts=_float(raw, "first_ts"), last_seq=_int(raw, "last_seq"), last_ts=_float(raw, "last_ts"),
            reason=_str(raw, "reason") if "reason" in raw else "",
        )
    except (KeyError, TypeError) as err:
        raise WireError(f"track event field missing or mistyped: {err}") from None
    if event.event not in ("appeared", "changed", "gone"):
        raise WireError(f"track event {_shown(event.event)}")
    return event


# ---------------------------------------------------------------- MQTT payloads (the bridge, docs/mqtt.md)

MQTT_TEXT_EVENTS = ("new", "updated", "ended")


@dataclass(frozen=True)
class MqttTrackText:
    """<topic_prefix>/<camera>/text: a track's consolidated text is new, was updated, or its track ended.

    Made from track.<camera> events: "new" when a track first has a text, "updated"
    when that text changes, "ended" once with the final text when the track is gone.
    A track that never had a text sends nothing.
    """

    camera: str
    track: int
    event: str  # "new" | "updated" | "ended"
    text: str
    confidence: float  # OCR confidence of the winning read, 0..100
    box: tuple[int, int, int, int] | None  # latest box, frame pixels
    first_seen: float  # UNIX seconds
    last_seen: float
    reads: int
    reason: str = ""  # ended: the track event's reason (missed, aged, finished, silent); else ""
    v: int = SCHEMA_VERSION


@dataclass(frozen=True)
class MqttTrackState:
    """One live track with a text, in MqttCameraState.tracks."""

    track: int
    text: str
    confidence: float
    box: tuple[int, int, int, int] | None
    first_seen: float
    last_seen: float


@dataclass(frozen=True)
class MqttKnownState:
    """One of the camera's filters.known strings, in MqttCameraState.known: on screen now or not."""

    text: str
    seen: bool  # a live track's consolidated text is this string
    last_seen: float | None  # UNIX seconds it was last on screen; None = not since the bridge started


@dataclass(frozen=True)
class MqttCameraState:
    """<topic_prefix>/<camera>/state (retained): what a home or plant automation wants to know now."""

    camera: str
    status: str  # "online" (source up), "offline" (source down), "unknown" (not heard yet)
    text: str  # the latest text read on this camera (kept after its track ended); "" = none yet
    text_ts: float | None  # when `text` last changed
    tracks: list[MqttTrackState]  # live tracks with a text, most recently seen first
    known: list[MqttKnownState]  # the camera's filters.known, in config order
    ts: float
    v: int = SCHEMA_VERSION


def encode_mqtt(payload: MqttTrackText | MqttCameraState | SourceEvent) -> bytes:
    """The UTF-8 JSON payload of an MQTT message of the bridge."""
    return _dumps(asdict(payload))


def source_event_from_dict(raw: dict[str, Any]) -> SourceEvent:
    """A published event.<camera> payload, typed (the MQTT bridge's input)."""
    try:
        event = SourceEvent(
            camera=_str(raw, "camera"), event=_str(raw, "event"), source=_str(raw, "source"),
            reason=_str(raw, "reason"), ts=_float(raw, "ts"),
        )
    except (KeyError, TypeError) as err:
        raise WireError(f"source event field missing or mistyped: {err}") from None
    if event.event not in ("source_up", "source_down"):
        raise WireError(f"source event {_shown(event.event)}")
    return event


# ---------------------------------------------------------------- helpers


def _dumps(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def _loads(data: bytes) -> dict[str, Any]:
    """A JSON object, strictly: no NaN/Infinity literals, no number beyond a float, no lone surrogate.

    Regression (fuzzing, issue 22): those three were accepted, and a payload holding one could not
    be sent again: json.dumps(allow_nan=False) raised ValueError, and a lone surrogate ("\\ud800")
    raised UnicodeEncodeError wherever the payload was encoded again (the subscribe tool's print).
    """
    try:
        text = bytes(data).decode("utf-8")
        obj = json.loads(text, parse_constant=_not_json, parse_float=_finite)
        if "\\u" in text:  # only an escape makes a lone surrogate (UTF-8 cannot hold one): check it encodes
            json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except (UnicodeError, ValueError, RecursionError):
        # ValueError covers JSONDecodeError and Python's int-digits limit (an integer
        # literal of more than 4300 digits raises a bare ValueError).
        raise WireError("not UTF-8 JSON") from None
    if not isinstance(obj, dict):
        raise WireError("JSON payload is not an object")
    return obj


def _not_json(literal: str) -> Any:
    raise ValueError(f"{literal} is not JSON")


def _finite(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):  # 1e999
        raise ValueError(f"{literal[:20]} is beyond a float")
    return value


_SHOWN = reprlib.Repr()
_SHOWN.maxstring = _SHOWN.maxother = _SHOWN.maxlong = 60
_SHOWN.maxlevel = 2


def _shown(value: Any) -> str:
    """A sender's value inside an error message: repr'd, at most ~60 characters, nesting cut at 2 levels.

    Regression (fuzzing, issue 22): errors echoed values whole (a 4000-digit schema version, a
    100 kB event name; a 990-deep list as role raised RecursionError in repr) into every log line.
    """
    return _SHOWN.repr(value)


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
    """A finite number as a float.

    Regression (fuzzing, issue 22): an integer too large for a float (JSON may carry 4300 digits,
    e.g. "ts": 1000...0 with 400 zeros) raised OverflowError instead of WireError.
    """
    value = raw[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{key} is not a finite number")
    try:
        number = float(value)
    except OverflowError:
        raise TypeError(f"{key} is not a finite number") from None
    if not math.isfinite(number):
        raise TypeError(f"{key} is not a finite number")
    return number


def _count(raw: dict[str, Any], key: str) -> int:
    value = _int(raw, key)
    if value < 0:
        raise TypeError(f"{key} is negative")
    return value


def _amount(raw: dict[str, Any], key: str) -> float:
    value = _float(raw, key)
    if value < 0:
        raise TypeError(f"{key} is negative")
    return value


def _optional(raw: dict[str, Any], key: str, parse: Any) -> Any:
    """parse(raw, key), or None where the key is absent or null."""
    return None if raw.get(key) is None else parse(raw, key)


def _map(raw: dict[str, Any], key: str) -> dict[str, Any]:
    value = raw[key]
    if not isinstance(value, dict):
        raise TypeError(f"{key} is not an object")
    return value


def _count_map(raw: dict[str, Any], key: str) -> dict[str, int]:
    """An object of non-negative integer counts by name (crops_dropped by reason, ...)."""
    value = _map(raw, key)
    counts = {}
    for name, count in value.items():
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            # the name is the sender's: shown bounded (see _shown)
            raise TypeError(f"{key}[{_shown(name)}] is not a non-negative integer")
        counts[name] = count
    return counts


def _ints(raw: dict[str, Any], key: str, count: int) -> tuple[int, ...]:
    value = raw[key]
    if not isinstance(value, list) or len(value) != count or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        raise TypeError(f"{key} is not a list of {count} integers")
    return tuple(value)
