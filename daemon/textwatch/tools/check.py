"""`textwatch check`: every problem with a config, found before the daemon starts.

Used by systemd's ExecStartPre. Each check returns a list of problems (errors,
not strings), so all of them are reported at once, one line each.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from textwatch.bus import check_curve, runtime_dir
from textwatch.config import Settings, tcp_endpoint
from textwatch.detect.darknet import DarknetModel, check_weights, parse_cfg
from textwatch.detect.runtime import choose_backend, load_model, make_detector, torch_device_elsewhere
from textwatch.errors import ConfigError, ModelError, TextwatchError
from textwatch.log import redact_url
from textwatch.recognize import check_languages, find_tessdata, make_recognizer


def check_model(settings: Settings) -> None:
    """The detector's model loads: the darknet pair for yolo, the wheel's ONNX file for ppocr."""
    if settings.detector.model == "ppocr":
        make_detector(settings.detector)
        return
    model = parse_cfg(settings.detector.cfg)
    check_weights(model, settings.detector.weights)
    check_finite(model, settings.detector.weights)
    load_model(settings.detector)


def check_finite(model: DarknetModel, weights: Path) -> None:
    """Regression: weights with a valid header and NaN values loaded, and the daemon detected
    nothing, silently."""
    header = weights.stat().st_size - 4 * model.parameter_count()
    values = np.fromfile(weights, dtype="<f4", offset=header)
    bad = int(np.count_nonzero(~np.isfinite(values)))
    if bad:
        raise ModelError(f"model weights {weights}: {bad} of {values.size} parameters are NaN or infinite")


def check_backend(settings: Settings) -> None:
    """The backend can run; torch is probed in a short-lived interpreter, never imported here (`run`'s supervisor)."""
    choose_backend(settings.detector.backend, torch_probe=torch_device_elsewhere)


def check_ocr(settings: Settings) -> None:
    """Every engine the config uses (ocr.engine and each camera's ocr_engine) starts."""
    engines = {settings.ocr.engine} | {c.ocr_engine for c in settings.cameras if c.ocr_engine is not None}
    if engines & {"tesserocr", "pytesseract"}:
        tessdata = find_tessdata(settings.ocr.tessdata)
        check_languages(tessdata, settings.ocr.languages)
    for engine in sorted(engines):
        make_recognizer(settings.ocr, engine).close()


def check_sources(settings: Settings) -> None:
    """A file source must exist and decode (regression: a text file or a broken MP4 was retried
    forever); streams and devices may come and go, so they are not checked."""
    files = [c for c in settings.cameras if "://" not in c.url and not c.url.isdigit() and not c.url.startswith("/dev/")]
    missing = [f"{c.id} ({redact_url(c.url)})" for c in files if not Path(c.url).is_file()]
    if missing:
        raise ConfigError(f"camera video file not found: {', '.join(missing)}")
    unreadable = [f"{c.id} ({redact_url(c.url)})" for c in files if not decodes(c.url)]
    if unreadable:
        raise ConfigError(f"camera video file has no frame OpenCV can decode: {', '.join(unreadable)}")


def decodes(path: str) -> bool:
    capture = cv2.VideoCapture(path)
    try:
        ok, frame = capture.read()
        return bool(ok) and frame is not None and frame.size > 0
    finally:
        capture.release()


def check_ports(settings: Settings) -> None:
    """The TCP ports the daemon binds are free now (regression: a publish port in use passed
    check; the publisher then crash-looped). Under systemd the daemon is stopped when
    ExecStartPre runs, so a port in use is someone else's."""
    wanted = []
    if settings.bus.publish.startswith("tcp://"):
        wanted.append(("bus.publish", *tcp_endpoint(settings.bus.publish, "bus.publish")))
    if settings.bus.pool:
        host, port = tcp_endpoint(settings.bus.pool, "bus.pool")
        wanted += [("bus.pool", host, port), ("bus.pool results (PORT+1)", host, port + 1)]
    if settings.metrics.enabled:
        wanted.append(("metrics.listen", *settings.metrics.address()))
    busy = [
        f"{key} port {port} on {host}: {reason}" for key, host, port in wanted if port and (reason := bind_fails(host, port))
    ]
    if busy:
        raise ConfigError("cannot bind " + "; ".join(busy))


def bind_fails(host: str, port: int) -> str | None:
    """Why binding (host, port) fails now, or None when it would succeed."""
    host = "0.0.0.0" if host == "*" else ("127.0.0.1" if host == "localhost" else host)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as err:
            return err.strerror or str(err)
    return None


def check_runtime_dir(settings: Settings) -> None:
    """The folder of the internal ipc sockets is (or can be made) a writable folder."""
    folder = runtime_dir(settings)
    existing = nearest_existing(folder)
    if not writable_folder(existing):
        raise ConfigError(f"bus.runtime_dir {folder}: {existing} is not a writable folder")


def nearest_existing(path: Path) -> Path | None:
    """`path` or its nearest existing parent: where a folder that does not exist yet would be made."""
    return next((p for p in (path, *path.parents) if p.exists()), None)


def writable_folder(folder: Path | None) -> bool:
    return folder is not None and folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)


def check_history(settings: Settings) -> None:
    """With history.enabled, the database's folder exists and is writable (or can be made), and an
    existing file is a file. Nothing is created here: systemd's ExecStartPre runs this."""
    if not settings.history.enabled:
        return
    from textwatch.history.store import database_path

    path = database_path(settings.history)
    if path.exists() and not path.is_file():
        raise ConfigError(f"history database {path} is not a file")
    folder = nearest_existing(path.parent)
    if not writable_folder(folder):
        raise ConfigError(f"history database {path}: {folder} is not a writable folder (set history.database)")


def check_mqtt(settings: Settings) -> None:
    """The [mqtt] section's credentials and TLS files are usable (the broker itself is not contacted:
    it may be down now and up later, which the bridge handles)."""
    from textwatch.comms.mqtt import credentials, tls_context

    credentials(settings.mqtt)
    if settings.mqtt.tls:
        tls_context(settings.mqtt)


CHECKS: list[Callable[[Settings], None]] = [
    check_model, check_backend, check_ocr, check_sources, check_curve, check_history, check_ports, check_runtime_dir,
    check_mqtt,
]


def run_checks(settings: Settings) -> list[TextwatchError]:
    problems = []
    for check in CHECKS:
        try:
            check(settings)
        except TextwatchError as err:
            problems.append(err)
    return problems

