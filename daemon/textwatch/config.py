"""The one typed settings schema, loaded from TOML.

Every field has a default, bounds where they make sense and a one-line
description; unknown keys are rejected with their dotted path. The commented
default file config/textwatch.toml mirrors this schema (a test keeps them in
step). Relative paths in a config file are resolved against that file's folder,
so a config can live next to its model. The built-in defaults are exactly the
values of config/textwatch.toml and resolve against config/ too, which is why
the model paths start with "../backup/". `render_default_config()` writes that
file from this schema, and a test keeps the two identical.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
import typing
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from textwatch.errors import ConfigError
from textwatch.log import redact_url

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = PROJECT_ROOT / "config" / "textwatch.toml"

Backend = Literal["auto", "cpu", "opencl", "cuda", "cuda-fp16", "torch"]


class Strict(BaseModel):
    """Base for every section: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DetectorSettings(Strict):
    model: Literal["yolo", "ppocr"] = Field(
        "yolo",
        description="yolo: our YOLOv4-tiny-3l (cfg/weights below, fast); ppocr: PP-OCRv6's small DB detector "
        "(the rapidocr wheel's model on ONNX Runtime: line ends more exact, about 3x slower on a CPU)",
    )
    cfg: Path = Field(Path("../backup/textwatch-tiny.cfg"), description="darknet cfg of the text detector")
    weights: Path = Field(
        Path("../backup/textwatch-tiny.weights"), description="darknet weights matching cfg exactly"
    )
    backend: Backend = Field(
        "auto", description="auto | cpu | opencl | cuda | cuda-fp16 | torch; auto picks the fastest present"
    )
    confidence: float = Field(0.3, ge=0.0, le=1.0, description="minimum detector confidence of a box")
    nms: float = Field(0.45, ge=0.0, le=1.0, description="IoU above which overlapping boxes are suppressed")
    padding: float = Field(
        0.05, ge=0.0, le=2.0, description="margin added above and below each box, as a fraction of its height"
    )
    padding_x: float = Field(
        0.5, ge=0.0, le=5.0,
        description="margin added left and right of each box, as a fraction of its height (line ends are the least certain)",
    )
    tiling: Literal["auto", "on", "off"] = Field(
        "auto", description="tile frames larger than tile_size (plus the whole frame) to find small text"
    )
    # Bounds: tiles smaller than the 416 px network input only upscale, and an overlap above half
    # multiplies the tiles (regression: tile_size 64 with overlap 0.89 took detect to 8.5 GB).
    tile_size: int = Field(640, ge=256, le=8192, description="tile edge in frame pixels")
    tile_overlap: float = Field(0.2, ge=0.0, le=0.5, description="fraction of a tile shared with its neighbour")
    tile_fit: bool = Field(
        True,
        description="shrink the tiles to the smallest edge (not below the network input) that covers the frame with "
        "as many tiles as tile_size gives: the same forwards, text larger at the network; a line wider than a tile "
        "is read whole from the whole-frame view (docs/detector.md)",
    )
    min_box_height: int = Field(6, ge=1, description="boxes lower than this (frame pixels) are dropped")
    refine_lines: bool = Field(
        True,
        description="yolo: split a box holding several text rows, and move each row's ends onto its ink "
        "(detect/lines.py; borders and rules end a line)",
    )
    threads: int = Field(
        0, ge=0, le=256, description="ppocr: ONNX Runtime intra-op threads of the detector (0 = its default, all cores)"
    )
    ppocr_side: int = Field(
        736, ge=32, le=4096,
        description="ppocr: frames with a shorter side below this are scaled up to it (PaddleOCR's limit_side_len)",
    )
    ppocr_max_side: int = Field(
        2000, ge=64, le=8192, description="ppocr: the network input's longer side never exceeds this (bounds the work)"
    )
    ppocr_box_score: float = Field(
        0.5, ge=0.0, le=1.0, description="ppocr: a region's mean text probability must reach this to be a box"
    )


Engine = Literal["tesserocr", "pytesseract", "ppocr"]


class OcrSettings(Strict):
    engine: Engine = Field(
        "ppocr",
        description="ppocr: PP-OCRv6's small line recognizer (ONNX Runtime, the model of the rapidocr wheel), "
        "the best word F1 on every eval set (docs/accuracy.md); tesserocr: one persistent Tesseract per process, "
        "4x faster per crop; pytesseract: one tesseract program per crop",
    )
    languages: str = Field("eng", pattern=r"^[A-Za-z0-9_]+(\+[A-Za-z0-9_]+)*$", description="Tesseract languages, '+'-joined")
    tessdata: Path | None = Field(None, description="tessdata folder; unset = $TESSDATA_PREFIX, else the one tesseract reports")
    psm: int = Field(7, ge=0, le=13, description="page segmentation mode; 7 = a single text line")
    fallback_psm: int = Field(
        6, ge=0, le=13,
        description="read again with this mode (6 = a block of lines) when the psm read is empty or unsure; 0 = never",
    )
    fallback_below: float = Field(
        60.0, ge=0.0, le=100.0, description="mean word confidence below which a psm read counts as unsure"
    )
    text_height: int = Field(
        36, ge=8, le=200, description="crops are scaled so their text is about this many pixels high"
    )
    binarize: bool = Field(False, description="Otsu-binarize crops before OCR")
    invert_light_on_dark: bool = Field(True, description="invert crops whose text is lighter than the background")
    min_confidence: float = Field(
        40.0, ge=0.0, le=100.0,
        description="readings with lower mean word confidence count as no text (40: best word F1 on the eval sets)",
    )
    timeout_ms: int = Field(
        2000, ge=0, le=600_000, description="a crop Tesseract has not read after this long is abandoned (failed, \"timeout\"); 0 = no limit"
    )
    batch: int = Field(
        8, ge=1, le=64,
        description="most queued crops a worker reads in one pass (one batched forward with ppocr); never waits for more, "
        "so it only applies when crops queue up (6-7 % less CPU per crop on this CPU, docs/benchmarks.md)",
    )
    ppocr_device: Literal["cpu", "cuda"] = Field(
        "cpu", description="ppocr: ONNX Runtime's CPU, or its CUDA provider (onnxruntime-gpu; an error if absent)"
    )
    ppocr_threads: int = Field(
        0, ge=0, le=64,
        description="ppocr: intra-op threads per reader; 0 = in the daemon's OCR workers, the cores shared out over "
        "the local workers (2 cores, 1 worker: 2 threads, a still scene's reads 1.4x sooner, docs/benchmarks.md; "
        "8 cores, 7 workers: 1 each), in image, eval and bench ocr 1",
    )
    ppocr_min_confidence: float = Field(
        50.0, ge=0.0, le=100.0,
        description="ppocr: readings with a lower mean character probability (0-100) count as no text",
    )


# ------------------------------------------------ tracking, consolidation, per-camera filters (issue 7)

DEFAULT_REPLACEMENTS = [("O", "0"), ("I", "1"), ("S", "5"), ("B", "8"), ("Z", "2")]
MAX_CHARSET = 512  # wire.MAX_CHARSET: a crop carries its camera's charset


class FilterSettings(Strict):
    format: str = Field(
        "", description="regular expression a text must fully match, e.g. a plate pattern; empty = any text"
    )
    replacements: list[tuple[str, str]] = Field(
        default_factory=lambda: list(DEFAULT_REPLACEMENTS),
        description="ordered pairs of confusable characters, swapped either way when that makes a text match format",
    )
    known: list[str] = Field(
        default_factory=list, description="known strings; a text within max_edit_distance of one becomes that string"
    )
    max_edit_distance: int = Field(1, ge=0, le=10, description="Levenshtein distance up to which a text matches a known string")
    charset: str = Field(
        "", max_length=MAX_CHARSET,
        description="the only characters OCR may read on this camera, e.g. \"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789\" "
        "for plates (ppocr masks its classes, Tesseract whitelists them); include \" \" to allow spaces; empty = any",
    )
    min_box_height: int = Field(0, ge=0, description="boxes lower than this (frame pixels) are ignored; 0 = no limit")
    min_confidence: float = Field(
        0.0, ge=0.0, le=100.0, description="reads with a lower OCR confidence (0-100) do not vote"
    )
    masks: list[list[tuple[int, int]]] = Field(
        default_factory=list,
        description="polygons [[x, y], ...] in frame pixels; a box whose centre lies inside one is ignored",
    )

    @field_validator("format")
    @classmethod
    def _format_compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as error:
            raise ValueError(f"format is not a valid regular expression: {error}") from error
        except (OverflowError, RecursionError):
            # Regression (fuzzing, issue 22): "a{99999999999}" raised OverflowError and 3,000 nested
            # groups RecursionError through pydantic (which converts only ValueError) out of load_settings.
            raise ValueError("format is not a usable regular expression: a repeat count too large or nested too deeply") from None
        return value

    @field_validator("replacements")
    @classmethod
    def _single_characters(cls, value: list[tuple[str, str]]) -> list[tuple[str, str]]:
        for pair in value:
            if len(pair[0]) != 1 or len(pair[1]) != 1 or pair[0] == pair[1]:
                raise ValueError(f"replacement {list(pair)} must be two different single characters")
        return value

    @field_validator("masks")
    @classmethod
    def _polygons(cls, value: list[list[tuple[int, int]]]) -> list[list[tuple[int, int]]]:
        for polygon in value:
            if len(polygon) < 3:
                raise ValueError(f"mask {polygon} needs at least 3 points")
        return value


class TrackingSettings(Strict):
    enabled: bool = Field(
        True, description="give regions track ids, consolidate their reads and publish track events; off = per-frame text only"
    )
    schedule: bool = Field(
        True, description="read a track's crop only when it is new, changed, better or due; off = read every crop"
    )
    iou_match: float = Field(
        0.3, gt=0.0, le=1.0, description="least IoU between a track's predicted box and a detection to match them"
    )
    max_missed: int = Field(5, ge=0, description="frames a track may go undetected before it is gone")
    max_age_s: float = Field(2.0, gt=0.0, description="seconds a track may go unseen before it is gone")
    refresh_s: float = Field(
        3.0, gt=0.0,
        description="an unchanged track is read again after this many seconds; also the longest a one-character edit waits",
    )
    change_threshold: float = Field(
        0.25, gt=0.0, description="signature difference (mean |z| of a 16x8 thumbnail) above which a crop changed"
    )
    better_area_ratio: float = Field(
        1.3, ge=1.0, description="a box this many times larger than the best one read is read again"
    )
    better_sharpness_ratio: float = Field(
        1.5, ge=1.0, description="a crop this many times sharper (variance of Laplacian) than the best read is read again"
    )


class ConsolidationSettings(Strict):
    similarity: float = Field(
        75.0, ge=0.0, le=100.0, description="rapidfuzz ratio (0-100) at or above which two reads are one text"
    )
    max_reads: int = Field(32, ge=1, le=10_000, description="best reads kept per track; the weakest is dropped beyond")


# Network sources OpenCV's FFmpeg backend streams from; anything else with "scheme:" is a typo.
STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "srt")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):(/*)")  # two letters at least: never a drive letter
_SCHEME_WITHOUT_COLON = re.compile(r"^(" + "|".join(STREAM_SCHEMES) + r")/+", re.IGNORECASE)  # rtsp//cam


def _shown_typo(value: str, prefix_end: int) -> str:
    """A URL too malformed for redact_url to find its userinfo: all up to its last "@" is hidden."""
    _, at, tail = value.rpartition("@")
    return redact_url(f"{value[:prefix_end]}***@{tail}" if at else value)


# ------------------------------------------------ change-gated detection (issue 16)


class GateSettings(Strict):
    enabled: bool = Field(
        True,
        description="detect only the tiles that changed since they were last detected and carry the others' boxes "
        "(a still 720p scene: ~1/19 of detect's CPU per frame, docs/benchmarks.md); off = detect every tile of every frame",
    )
    threshold: int = Field(
        24, ge=1, le=255,
        description="grey levels (0-255) a pixel of the frame scaled to 320 px wide must change by, after each tile's "
        "brightness shift is removed, to count as changed; higher = less sensitive to noise and flicker",
    )
    min_area: int = Field(
        200, ge=1, le=10_000_000,
        description="changed area (frame pixels) a tile needs to count as changed, e.g. 200 = a 14x14 patch; "
        "higher = less sensitive",
    )
    full_detect_s: float = Field(
        5.0, gt=0.0, le=3600.0,
        description="every view (the whole frame, each tile) is detected again at least this often, changed or not, "
        "one due view per frame (not all in one frame: no latency spike): about the longest a change below the "
        "thresholds goes unseen",
    )
    roi: list[int] = Field(
        default_factory=list,
        description="[x1, y1, x2, y2] in frame pixels: detect only inside this rectangle (gated or not), clipped "
        "to the frame; [] = the whole frame",
    )

    @field_validator("roi")
    @classmethod
    def _rectangle(cls, value: list[int]) -> list[int]:
        if not value:
            return value
        if len(value) != 4:
            raise ValueError(f"roi {value} must be [x1, y1, x2, y2] or []")
        x1, y1, x2, y2 = value
        if min(value) < 0 or x2 <= x1 or y2 <= y1:
            raise ValueError(f"roi {value} needs 0 <= x1 < x2 and 0 <= y1 < y2")
        return value


class CameraSettings(Strict):
    id: str = Field("sample", pattern=r"^[A-Za-z0-9_-]{1,64}$", description="camera id, used in topics and metrics")
    url: str = Field(
        "../daemon/textwatch/data/sample.mp4",
        description="V4L2 index or /dev/videoN, rtsp://, http(s):// MJPEG, or a video file path",
    )
    loop: bool = Field(True, description="files only: start again at the end")
    realtime: bool = Field(True, description="files only: play at the file's frame rate (false: as fast as possible)")
    max_fps: float = Field(5.0, gt=0.0, le=240.0, description="at most this many frames per second are processed")
    rtsp_transport: Literal["tcp", "udp"] = Field("tcp", description="RTSP transport; tcp survives lossy links")
    open_timeout_s: float = Field(10.0, gt=0.0, le=300.0, description="give up opening a stream after this long")
    read_timeout_s: float = Field(5.0, gt=0.0, le=300.0, description="give up on one read after this long")
    stall_s: float = Field(5.0, gt=0.0, le=3600.0, description="no frame for this long counts as source down")
    reconnect_min_s: float = Field(0.5, gt=0.0, le=60.0, description="first reconnect delay (doubles, with jitter)")
    reconnect_max_s: float = Field(15.0, gt=0.0, le=3600.0, description="cap of the reconnect delay")
    probe_s: float = Field(
        1.0, gt=0.0, le=30.0,
        description="streams: how long FFmpeg reads at open to learn the codec (analyzeduration); raise for rare key frames",
    )
    ocr_engine: Engine | None = Field(
        None, description="this camera's OCR engine (e.g. ppocr for plates, tesserocr for a screen); unset = ocr.engine"
    )
    filters: FilterSettings = Field(
        default_factory=FilterSettings, description="normalisation and filters of this camera's text and boxes"
    )
    gate: GateSettings = Field(
        default_factory=GateSettings, description="change-gated detection: only the tiles that changed are detected"
    )

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        """Regression: `ftp://...` and typos like `rtsp:/host` were taken as file names and
        retried forever. A URL names a scheme FFmpeg streams from, followed by "//"."""
        typo = _SCHEME_WITHOUT_COLON.match(value)
        if typo is not None:  # Regression: `rtsp//admin:pw@cam` was a file name, shown with its password
            raise ValueError(f"camera url {_shown_typo(value, typo.end())}: malformed, write {typo.group(1).lower()}://HOST/...")
        match = _SCHEME.match(value)
        if match is None:
            return value
        scheme, slashes = match.group(1).lower(), match.group(2)
        shown = redact_url(value)
        if scheme not in STREAM_SCHEMES:
            raise ValueError(f"camera url {shown}: unknown scheme {scheme}:// (use {', '.join(STREAM_SCHEMES)}, a device or a file)")
        if slashes != "//":
            raise ValueError(f"camera url {shown}: malformed, write {scheme}://HOST/...")
        return value


class PipelineSettings(Strict):
    workers: int = Field(0, ge=0, le=256, description="OCR worker processes; 0 = CPU cores minus one, at least one")
    batch: int = Field(8, ge=1, le=64, description="most frames in one detector forward")
    crop_hwm: int = Field(
        200, ge=1, le=100_000, description="crops queued towards workers before new ones are dropped (counted)"
    )
    frame_timeout_s: float = Field(
        2.0, gt=0.0, le=60.0, description="frame.<camera> is published when all crops are read or after this"
    )
    crop_max_age_s: float = Field(
        0.0, ge=0.0, le=3600.0,
        description="live cameras: a worker skips a crop captured longer ago than this while newer crops wait behind "
        "it (published as failed \"stale\", counted), so a pool that cannot keep up reads what the camera shows now "
        "instead of a backlog (2-5; docs/benchmarks.md); 0 = read every crop (files, and every read matters)",
    )
    stats_interval_s: float = Field(5.0, gt=0.0, le=3600.0, description="period of the stats message")
    shutdown_grace_s: float = Field(5.0, gt=0.0, le=120.0, description="time in-flight crops get to finish on stop")
    restart_budget: int = Field(5, ge=0, le=1000, description="restarts of a process allowed within restart_window_s")
    restart_window_s: float = Field(60.0, gt=0.0, le=86400.0, description="window of the restart budget")
    worker_max_crops: int = Field(
        50_000, ge=0, description="an OCR worker is recycled (replaced by a fresh one) after this many crops; 0 = never"
    )
    worker_max_rss_growth_mb: float = Field(
        200.0, ge=0.0, description="an OCR worker is recycled once its RSS grew this much over its RSS after 100 crops; 0 = never"
    )
    hung_s: float = Field(
        15.0, ge=1.0, le=3600.0,
        description="a child silent (no progress) this long is killed and restarted, counted; keep under systemd's WatchdogSec",
    )
    start_timeout_s: float = Field(
        90.0, ge=1.0, le=3600.0,
        description="a starting child's time to its first sign of progress (model load, Tesseract, the pool) before it is hung",
    )


class BusSettings(Strict):
    runtime_dir: Path | None = Field(
        None, description="folder of the internal ipc sockets; unset = $RUNTIME_DIRECTORY or /tmp/textwatch-UID"
    )
    publish: str = Field(
        "tcp://127.0.0.1:5560", description="where subscribers connect (XPUB); beyond loopback is an explicit choice"
    )
    pool: str = Field(
        "", description="tcp://HOST:PORT for remote workers: crops on PORT, results on PORT+1; empty = none"
    )
    pool_plaintext_loopback: bool = Field(
        False, description="let a loopback bus.pool run without CURVE: any local user can then feed results"
    )
    publish_hwm: int = Field(
        1000, ge=1, le=1_000_000, description="messages queued per slow subscriber before it misses some"
    )
    curve_secret_key: Path | None = Field(
        None, description="the daemon's CURVE secret key (.key_secret, mode 0600); set = publish and pool speak CURVE"
    )
    curve_allowed_keys: Path | None = Field(
        None, description="folder of the client public keys (.key) allowed on publish and pool; read at start"
    )
    curve_client_secret_key: Path | None = Field(
        None, description="subscribe and remote worker: this client's CURVE secret key (.key_secret, mode 0600)"
    )
    curve_server_key: Path | None = Field(
        None, description="subscribe and remote worker: the daemon's CURVE public key (.key)"
    )

    @field_validator("publish")
    @classmethod
    def _publish_endpoint(cls, value: str) -> str:
        """Regression: `tcp://127.0.0.1:99999` passed check and ZeroMQ bound another port."""
        if not value.startswith("ipc://"):
            tcp_endpoint(value, "bus.publish")
        return value

    @field_validator("pool")
    @classmethod
    def _pool_endpoint(cls, value: str) -> str:
        if value:
            _, port = tcp_endpoint(value, "bus.pool")
            if port + 1 > 65535:
                raise ValueError(f"bus.pool {value}: results go to PORT+1, which must be at most 65535")
        return value

    @model_validator(mode="after")
    def _pool_ports_apart_from_publish(self) -> BusSettings:
        """Regression: pool PORT+1 equal to the publish port crash-looped the publisher 6 times
        and exited 1 with no line naming the port."""
        if self.pool and not self.publish.startswith("ipc://"):
            pool_host, pool_port = tcp_endpoint(self.pool, "bus.pool")
            host, port = tcp_endpoint(self.publish, "bus.publish")
            if port and port in (pool_port, pool_port + 1) and hosts_may_clash(host, pool_host):
                raise ValueError(
                    f"bus.publish {self.publish} uses a port of bus.pool {self.pool} (crops on PORT, results on PORT+1)"
                )
        return self

    @model_validator(mode="after")
    def _curve_required_beyond_loopback(self) -> BusSettings:
        for key, endpoint in (("publish", self.publish), ("pool", self.pool)):
            if endpoint and binds_beyond_loopback(endpoint) and self.curve_secret_key is None:
                raise ValueError(
                    f"bus.{key} {endpoint} binds beyond loopback: set bus.curve_secret_key and bus.curve_allowed_keys"
                    " (textwatch keys generate; docs/operations.md, Secure)"
                )
        return self

    @model_validator(mode="after")
    def _pool_speaks_curve(self) -> BusSettings:
        """A tcp pool takes OCR results from whoever reaches its port: on loopback that is every local
        user, so without CURVE it is an explicit, named choice (issue 22: forged results)."""
        if self.pool and self.curve_secret_key is None and not self.pool_plaintext_loopback:
            raise ValueError(
                f"bus.pool {self.pool} without CURVE: set bus.curve_secret_key and bus.curve_allowed_keys, or "
                "bus.pool_plaintext_loopback = true to accept results from any local user"
            )
        return self

    @model_validator(mode="after")
    def _curve_keys_in_pairs(self) -> BusSettings:
        if (self.curve_secret_key is None) != (self.curve_allowed_keys is None):
            raise ValueError("bus.curve_secret_key and bus.curve_allowed_keys go together: set both or neither")
        if (self.curve_client_secret_key is None) != (self.curve_server_key is None):
            raise ValueError("bus.curve_client_secret_key and bus.curve_server_key go together: set both or neither")
        return self

    def resolve_paths(self, base: Path) -> None:
        """The runtime folder and key paths, relative to `base` (the config file's folder)."""
        for key in ("runtime_dir", "curve_secret_key", "curve_allowed_keys", "curve_client_secret_key", "curve_server_key"):
            value = getattr(self, key)
            if value is not None:
                setattr(self, key, _absolute(value, base))


# Regression (fuzzing, issue 22): `\d` took Arabic-Indic digits ("tcp://127.0.0.1:٣٣٣٣"), `$` a trailing
# newline and the host any character but ":/[]" (spaces, non-ASCII); check passed them and ZeroMQ could
# not bind. Now: a host of printable ASCII but ":/[]", ASCII digits, and \Z.
_TCP_ENDPOINT = re.compile(r"^tcp://(\[[0-9A-Fa-f:.]+\]|[!-.0-9;-Z\\^-~]+):([0-9]{1,5})\Z")
WILDCARD_HOSTS = {"*", "0.0.0.0", "::", "[::]"}


def tcp_endpoint(endpoint: str, key: str) -> tuple[str, int]:
    """(host, port) of tcp://HOST:PORT; ValueError naming `key` when malformed or the port is out of 1..65535."""
    match = _TCP_ENDPOINT.match(endpoint)
    if not match:
        raise ValueError(f"{key} {endpoint!r} is not tcp://HOST:PORT (or ipc://PATH for bus.publish)")
    port = int(match.group(2))
    if not 0 <= port <= 65535:  # 0: any free port (ZeroMQ picks one; tests and tools use it)
        raise ValueError(f"{key} {endpoint}: port {port} is outside 0..65535")
    return match.group(1).strip("[]"), port


def hosts_may_clash(a: str, b: str) -> bool:
    """Two binds on one port collide when the hosts are equal or either is a wildcard."""
    return a == b or a in WILDCARD_HOSTS or b in WILDCARD_HOSTS or {a, b} <= {"localhost", "127.0.0.1"}


def binds_beyond_loopback(endpoint: str) -> bool:
    """True for a network endpoint whose host is not a loopback address (*, 0.0.0.0, an interface, a name).

    ipc:// and inproc:// are local (file-system protected); "localhost" counts as loopback.
    """
    if endpoint.startswith(("ipc://", "inproc://")):
        return False
    host = endpoint.partition("://")[2].rpartition(":")[0].strip("[]")
    if host == "localhost":
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return True
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return not address.is_loopback


class MetricsSettings(Strict):
    enabled: bool = Field(True, description="serve Prometheus metrics from the publisher process")
    listen: str = Field(
        "127.0.0.1:9108", description="HOST:PORT of the metrics endpoint ([::1]:PORT for IPv6); beyond loopback is an explicit choice"
    )

    allow_remote: bool = Field(
        False, description="allow metrics.listen beyond loopback (0.0.0.0, ::, an interface): metrics have no authentication"
    )
    idle_timeout_s: float = Field(
        10.0, gt=0.0, le=300.0, description="a metrics connection that sends nothing, or stops mid-request, is closed after this long"
    )
    handler_threads: int = Field(4, ge=1, le=64, description="at most this many threads answer metrics requests at once")
    max_connections: int = Field(
        64, ge=1, le=4096, description="open metrics connections held at once (idle ones wait without a thread); more are closed, counted"
    )

    @field_validator("listen")
    @classmethod
    def _host_and_port(cls, value: str) -> str:
        split_listen(value)
        return value

    @model_validator(mode="after")
    def _loopback_unless_allowed(self) -> MetricsSettings:
        """Regression: `metrics.listen = "0.0.0.0:..."` was accepted without a word, publishing
        camera ids and counters to the network with no authentication."""
        if binds_beyond_loopback(f"tcp://{self.listen}") and not self.allow_remote:
            raise ValueError(
                f"metrics.listen {self.listen} is beyond loopback: metrics have no authentication;"
                " set metrics.allow_remote = true to serve them to the network"
            )
        return self

    def address(self) -> tuple[str, int]:
        """(host, port) of `listen`; an IPv6 host without its brackets."""
        return split_listen(self.listen)


_LISTEN = re.compile(r"^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+)):([0-9]{1,5})\Z")  # \Z: no trailing newline


def split_listen(listen: str) -> tuple[str, int]:
    """HOST:PORT or [V6]:PORT as (host, port); ValueError when malformed or the port is out of 1..65535."""
    match = _LISTEN.match(listen)
    if match is None or not 1 <= int(match[3]) <= 65535:
        raise ValueError(f"{listen!r} is not HOST:PORT with a port in 1..65535")
    return match[1] or match[2], int(match[3])


MQTT_TOPIC_PART = r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$"  # no wildcards (+ #), no empty levels


class MqttSettings(Strict):
    """The MQTT bridge (processes/mqtt.py): track texts, camera state and Home Assistant discovery on a broker."""

    enabled: bool = Field(False, description="run the MQTT bridge as a child of `textwatch run`")
    host: str = Field("localhost", min_length=1, max_length=253, description="the MQTT broker's host name or address")
    port: int = Field(1883, ge=1, le=65535, description="the broker's port (1883 plain, 8883 TLS by convention)")
    client_id: str = Field(
        "", max_length=128, description="MQTT client id; empty = textwatch-<topic_prefix>-<host name>"
    )
    username: str = Field("", max_length=256, description="broker user; empty = $TEXTWATCH_MQTT_USERNAME, else none")
    password: SecretStr = Field(
        SecretStr(""),
        description="broker password (never logged); empty = $TEXTWATCH_MQTT_PASSWORD, which keeps it out of this file",
    )
    tls: bool = Field(False, description="speak TLS to the broker (verifying its certificate and host name)")
    ca_file: Path | None = Field(None, description="tls: CA certificate(s) (PEM) that signed the broker's; unset = the system's")
    cert_file: Path | None = Field(None, description="tls: this client's certificate (PEM), for brokers that require one")
    key_file: Path | None = Field(None, description="tls: the private key (PEM) of cert_file")
    keepalive_s: int = Field(30, ge=5, le=3600, description="MQTT keepalive; a silent connection is dead after 1.5x this")
    reconnect_min_s: int = Field(1, ge=1, le=60, description="first reconnect delay to a lost broker (doubles up to the cap)")
    reconnect_max_s: int = Field(30, ge=1, le=3600, description="cap of the reconnect delay")
    queue: int = Field(
        1000, ge=1, le=1_000_000,
        description="messages held while the broker is away or slow; beyond, the oldest are dropped (counted)",
    )
    topic_prefix: str = Field(
        "textwatch", pattern=MQTT_TOPIC_PART,
        description="topics are <topic_prefix>/<camera>/text|state|events and <topic_prefix>/availability",
    )
    qos_text: Literal[0, 1, 2] = Field(1, description="QoS of <camera>/text (new, updated, ended track texts)")
    retain_text: bool = Field(False, description="retain the last <camera>/text message")
    qos_state: Literal[0, 1, 2] = Field(1, description="QoS of <camera>/state (latest text per track, camera status)")
    retain_state: bool = Field(True, description="retain <camera>/state, so a new client sees it at once")
    qos_events: Literal[0, 1, 2] = Field(1, description="QoS of <camera>/events (source up and down)")
    retain_events: bool = Field(False, description="retain the last <camera>/events message")
    qos_availability: Literal[0, 1, 2] = Field(
        1, description="QoS of <topic_prefix>/availability (always retained; the last will says offline)"
    )
    discovery: bool = Field(True, description="publish Home Assistant MQTT discovery configs (retained)")
    discovery_prefix: str = Field(
        "homeassistant", pattern=MQTT_TOPIC_PART, description="Home Assistant's discovery prefix (its MQTT integration's setting)"
    )
    source: str = Field(
        "", description="`textwatch mqtt` alone: the daemon's publish endpoint to bridge (tcp://HOST:PORT); empty = this config's daemon"
    )
    bus_silence_s: float = Field(
        30.0, gt=0.0, le=3600.0,
        description="availability reads offline when the daemon's bus has been silent this long (a dead remote daemon)",
    )

    @field_validator("host")
    @classmethod
    def _plain_host(cls, value: str) -> str:
        if "://" in value or "/" in value or " " in value:
            raise ValueError(f"{value!r} is a host name or address, not a URL (the port is mqtt.port)")
        return value

    @field_validator("source")
    @classmethod
    def _source_endpoint(cls, value: str) -> str:
        if value and not value.startswith(("tcp://", "ipc://")):
            raise ValueError(f"{value!r} is not a ZeroMQ endpoint (tcp://HOST:PORT or ipc://PATH)")
        return value

    @model_validator(mode="after")
    def _tls_files_and_backoff(self) -> MqttSettings:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("mqtt.cert_file and mqtt.key_file go together: set both or neither")
        if not self.tls and (self.ca_file or self.cert_file):
            raise ValueError("mqtt.ca_file, cert_file and key_file need mqtt.tls = true")
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("mqtt.reconnect_max_s is below mqtt.reconnect_min_s")
        return self

    def resolve_paths(self, base: Path) -> None:
        """The TLS files, relative to `base` (the config file's folder)."""
        for key in ("ca_file", "cert_file", "key_file"):
            value = getattr(self, key)
            if value is not None:
                setattr(self, key, _absolute(value, base))


class ImageSettings(Strict):
    max_pixels: int = Field(
        100_000_000, ge=1, description="images with more pixels are refused (decompression bombs)"
    )


# ------------------------------------------------ pictures, history and the web view (issue 18)


class MediaSettings(Strict):
    snapshot_fps: float = Field(
        2.0, ge=0.0, le=30.0,
        description="per camera, at most this many newest frames/s (JPEG) on snapshot.<camera> for the live view; 0 = none",
    )
    snapshot_width: int = Field(960, ge=64, le=4096, description="snapshots wider than this are scaled down to it")
    crop_fps: float = Field(
        10.0, ge=0.0, le=100.0,
        description="per camera, at most this many crop pictures/s (JPEG) of tracked regions on crop.<camera>; 0 = none",
    )
    jpeg_quality: int = Field(80, ge=10, le=100, description="JPEG quality of snapshots and crop pictures")


class HistorySettings(Strict):
    enabled: bool = Field(True, description="run the history store: every consolidated track, with its crop, into SQLite")
    database: Path | None = Field(
        None, description="the SQLite file; unset = $STATE_DIRECTORY/history.sqlite3 (systemd), else ~/.local/state/textwatch/"
    )
    retention_days: float = Field(30.0, ge=0.0, le=36_500.0, description="tracks last seen longer ago are deleted; 0 = kept for ever")
    retention_mb: float = Field(
        1024.0, ge=0.0, le=10_000_000.0, description="beyond this many MB in use the oldest tracks are deleted; 0 = no limit"
    )
    max_pending_crops: int = Field(
        1000, ge=1, le=100_000, description="crop pictures held for tracks that have no text yet; beyond, the oldest is dropped"
    )


class ViewSettings(Strict):
    listen: str = Field(
        "127.0.0.1:8088", description="HOST:PORT of `textwatch view`; beyond loopback needs token"
    )
    token: str = Field(
        "", max_length=256,
        description="secret a browser or script must present (?token=, a cookie, or Authorization: Bearer); required beyond loopback",
    )
    max_range_days: float = Field(366.0, gt=0.0, le=36_500.0, description="longest time range one history query may ask for")

    @field_validator("listen")
    @classmethod
    def _view_host_and_port(cls, value: str) -> str:
        split_listen(value)
        return value

    @model_validator(mode="after")
    def _token_beyond_loopback(self) -> ViewSettings:
        if binds_beyond_loopback(f"tcp://{self.listen}") and len(self.token) < 16:
            raise ValueError(f"view.listen {self.listen} is beyond loopback: set view.token (at least 16 characters)")
        return self

    def address(self) -> tuple[str, int]:
        return split_listen(self.listen)


class Settings(Strict):
    """All of textwatch's settings; one object is passed around, not loose values."""

    detector: DetectorSettings = Field(default_factory=DetectorSettings)
    ocr: OcrSettings = Field(default_factory=OcrSettings)
    image: ImageSettings = Field(default_factory=ImageSettings)
    cameras: list[CameraSettings] = Field(
        default_factory=lambda: [CameraSettings()],
        min_length=1,  # Regression: `cameras = []` started a daemon that exited 0 at once
        description="one [[cameras]] table per source; the default plays the bundled sample video",
    )
    pipeline: PipelineSettings = Field(default_factory=PipelineSettings)
    tracking: TrackingSettings = Field(default_factory=TrackingSettings)
    consolidation: ConsolidationSettings = Field(default_factory=ConsolidationSettings)
    bus: BusSettings = Field(default_factory=BusSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    media: MediaSettings = Field(default_factory=MediaSettings)
    history: HistorySettings = Field(default_factory=HistorySettings)
    view: ViewSettings = Field(default_factory=ViewSettings)
    mqtt: MqttSettings = Field(default_factory=MqttSettings, description="the MQTT bridge and Home Assistant discovery (off by default)")
    source: Path | None = Field(None, exclude=True, description="file this was loaded from, if any")

    @model_validator(mode="after")
    def _tiles_larger_than_boxes(self) -> Settings:
        if self.detector.min_box_height >= self.detector.tile_size:
            raise ValueError("detector.min_box_height must be smaller than detector.tile_size")
        return self

    @model_validator(mode="after")
    def _unique_camera_ids(self) -> Settings:
        ids = [camera.id for camera in self.cameras]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"camera ids must be unique: {', '.join(duplicates)} repeated")
        return self

    @model_validator(mode="after")
    def _metrics_port_apart_from_the_bus(self) -> Settings:
        """Regression: metrics on the publish port ran the daemon without metrics, silently."""
        if not self.metrics.enabled:
            return self
        host, port = self.metrics.address()
        taken = []
        if not self.bus.publish.startswith("ipc://"):
            taken.append(("bus.publish", *tcp_endpoint(self.bus.publish, "bus.publish")))
        if self.bus.pool:
            pool_host, pool_port = tcp_endpoint(self.bus.pool, "bus.pool")
            taken += [("bus.pool", pool_host, pool_port), ("bus.pool results (PORT+1)", pool_host, pool_port + 1)]
        for key, other_host, other_port in taken:
            if port and port == other_port and hosts_may_clash(host, other_host):
                raise ValueError(f"metrics.listen {self.metrics.listen} uses the port of {key}")
        return self

    @model_validator(mode="after")
    def _backoff_cap_above_floor(self) -> Settings:
        for camera in self.cameras:
            if camera.reconnect_max_s < camera.reconnect_min_s:
                raise ValueError(f"camera {camera.id}: reconnect_max_s is below reconnect_min_s")
        return self

    @model_validator(mode="after")
    def _mqtt_needs_tracks(self) -> Settings:
        if self.mqtt.enabled and not self.tracking.enabled:
            raise ValueError("mqtt.enabled needs tracking.enabled: the bridge publishes consolidated track texts")
        return self

    def resolve_paths(self, base: Path) -> Settings:
        """Make relative paths absolute: against `base` (the config file's folder) when the
        file set them, against config/ when they are the built-in defaults, so a config
        elsewhere that omits the model or camera still finds the shipped ones."""
        det = self.detector
        det.cfg = _absolute(det.cfg, _base_for(det, "cfg", base))
        det.weights = _absolute(det.weights, _base_for(det, "weights", base))
        if self.ocr.tessdata is not None:
            self.ocr.tessdata = _absolute(self.ocr.tessdata, base)
        self.bus.resolve_paths(base)
        if self.history.database is not None:
            self.history.database = _absolute(self.history.database, base)
        self.mqtt.resolve_paths(base)
        cameras_base = base if "cameras" in self.model_fields_set else DEFAULT_CONFIG.parent
        for camera in self.cameras:
            camera.url = resolve_source(camera.url, _base_for(camera, "url", cameras_base))
        return self


def _base_for(section: BaseModel, key: str, base: Path) -> Path:
    return base if key in section.model_fields_set else DEFAULT_CONFIG.parent


def resolve_source(url: str, base: Path) -> str:
    """Relative file paths become absolute; device indices and URLs stay as they are."""
    if "://" in url or url.isdigit() or url.startswith("/"):
        return url
    return str(_absolute(Path(url), base))


def _absolute(path: Path, base: Path) -> Path:
    """Regression (fuzzing, issue 22): "~nosuchuser/x" raised RuntimeError (no such home folder), a
    NUL byte ValueError, out of load_settings, where ConfigError is the contract."""
    try:
        expanded = path.expanduser()
        return expanded if expanded.is_absolute() else (base / expanded).resolve()
    except (RuntimeError, ValueError, OSError) as err:
        raise ConfigError(f"path {str(path)!r} cannot be used: {one_line(str(err))}") from None


def load_settings(path: str | Path | None) -> Settings:
    """Load and validate a TOML config; None gives the built-in defaults."""
    if path is None:
        return Settings().resolve_paths(DEFAULT_CONFIG.parent)
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"config file {path} not readable: {err}") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config file {path} is not valid TOML: {err}") from None
    except RecursionError:  # Regression (issue 22): a 5,000-deep array exited 70 "internal error" with a huge traceback
        raise ConfigError(f"config file {path} nests arrays or tables too deeply to read") from None
    except ValueError:  # Regression (fuzzing, issue 22): Python's int-digits limit raised a bare ValueError
        raise ConfigError(f"config file {path} is not usable TOML: an integer of more than 4300 digits") from None
    try:
        settings = Settings.model_validate(data)
    except ValidationError as err:
        raise ConfigError(f"{path}: {describe_validation_error(err)}") from None
    except RecursionError:
        raise ConfigError(f"config file {path} nests values too deeply to check") from None
    settings.source = path.resolve()
    try:
        return settings.resolve_paths(path.resolve().parent)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


def describe_validation_error(err: ValidationError) -> str:
    """The first problem as one line, naming its dotted key path."""
    problems = []
    for item in err.errors():
        where = ".".join(str(part) for part in item["loc"]) or "(top level)"
        if item["type"] == "extra_forbidden":
            problems.append(f"unknown key '{where}'")
        else:
            problems.append(f"'{where}': {item['msg']}")
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return one_line(problems[0] + more)


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def one_line(text: str) -> str:
    """`text` with control characters and line breaks escaped (a newline shows as \\n).

    Regression (fuzzing, issue 22): a key or value holding a newline (`"\\n" = []`, a camera
    url "rtsp:/x\\ny") made the "one-line" config error span several lines.
    """
    return _CONTROL.sub(lambda match: repr(match[0])[1:-1], text)


HEADER = """\
# textwatch configuration (TOML). Every key is optional; the values below are
# the built-in defaults. Unknown keys are errors. Relative paths are resolved
# against the folder of this file. Check a config with: textwatch check -c FILE
# This file is generated from the schema in daemon/textwatch/config.py by
# `python -m textwatch.config > config/textwatch.toml`; a test keeps them equal.
"""


def render_default_config() -> str:
    """The commented default config: one `# description` line above every key."""
    parts = [HEADER]
    defaults = Settings().model_dump(mode="json", exclude={"source"})
    for name, field in Settings.model_fields.items():
        if name == "source":
            continue
        is_list = isinstance(defaults[name], list)
        model = typing.get_args(field.annotation)[0] if is_list else field.annotation
        values = defaults[name][0] if is_list else defaults[name]
        parts += _render_table(name, model, values, field.description, array=is_list)
    return "".join(parts)


def _render_table(name: str, model: type[BaseModel], values: dict, description: str | None, array: bool = False) -> list[str]:
    """One [table] (or [[array]] element): plain keys first, then nested tables."""
    parts = [f"\n[[{name}]]\n" if array else f"\n[{name}]\n"]
    if description:
        parts.append(f"# {description}\n")
    nested = []
    for key, sub in model.model_fields.items():
        value = values[key]
        if isinstance(value, dict):
            nested.append((f"{name}.{key}", sub.annotation, value, sub.description))
            continue
        parts.append(f"# {sub.description}\n")
        parts.append(f"{key} = {_toml_value(value)}\n" if value is not None else f"# {key} = {_EXAMPLES[key]}\n")
    for args in nested:
        parts += _render_table(*args)
    return parts


_EXAMPLES = {
    "tessdata": '"/usr/share/tesseract-ocr/5/tessdata"',
    "runtime_dir": '"/run/textwatch"',
    "curve_secret_key": '"/etc/textwatch/keys/daemon.key_secret"',
    "curve_allowed_keys": '"/etc/textwatch/keys/clients"',
    "curve_client_secret_key": '"/etc/textwatch/keys/worker1.key_secret"',
    "curve_server_key": '"/etc/textwatch/keys/daemon.key"',
    "ocr_engine": '"ppocr"',
    "database": '"/var/lib/textwatch/history.sqlite3"',
    "ca_file": '"/etc/textwatch/mqtt/ca.crt"',
    "cert_file": '"/etc/textwatch/mqtt/client.crt"',
    "key_file": '"/etc/textwatch/mqtt/client.key"',
}


def _toml_value(value: object) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value) if isinstance(value, float) else f"{value:_}" if value >= 100_000 else str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


if __name__ == "__main__":
    print(render_default_config(), end="")
