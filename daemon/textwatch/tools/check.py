"""`textwatch check`: every problem with a config, found before the daemon starts.

Used by systemd's ExecStartPre. Each check returns a list of problems (errors,
not strings), so all of them are reported at once, one line each.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from textwatch.bus import check_curve
from textwatch.config import Settings
from textwatch.detect.darknet import check_weights, parse_cfg
from textwatch.detect.runtime import choose_backend, load_model
from textwatch.errors import ConfigError, TextwatchError
from textwatch.recognize import check_languages, find_tessdata, make_recognizer


def check_model(settings: Settings) -> None:
    model = parse_cfg(settings.detector.cfg)
    check_weights(model, settings.detector.weights)
    load_model(settings.detector)


def check_backend(settings: Settings) -> None:
    choose_backend(settings.detector.backend)


def check_ocr(settings: Settings) -> None:
    """Every engine the config uses (ocr.engine and each camera's ocr_engine) starts."""
    engines = {settings.ocr.engine} | {c.ocr_engine for c in settings.cameras if c.ocr_engine is not None}
    if engines & {"tesserocr", "pytesseract"}:
        tessdata = find_tessdata(settings.ocr.tessdata)
        check_languages(tessdata, settings.ocr.languages)
    for engine in sorted(engines):
        make_recognizer(settings.ocr, engine).close()


def check_sources(settings: Settings) -> None:
    """A file source must exist; streams and devices may come and go, so they are not checked."""
    missing = [
        f"{camera.id} ({camera.url})"
        for camera in settings.cameras
        if "://" not in camera.url and not camera.url.isdigit() and not camera.url.startswith("/dev/")
        and not Path(camera.url).is_file()
    ]
    if missing:
        raise ConfigError(f"camera video file not found: {', '.join(missing)}")


def check_mqtt(settings: Settings) -> None:
    """The [mqtt] section's credentials and TLS files are usable (the broker itself is not contacted:
    it may be down now and up later, which the bridge handles)."""
    from textwatch.comms.mqtt import credentials, tls_context

    credentials(settings.mqtt)
    if settings.mqtt.tls:
        tls_context(settings.mqtt)


CHECKS: list[Callable[[Settings], None]] = [check_model, check_backend, check_ocr, check_sources, check_curve]
CHECKS.append(check_mqtt)


def run_checks(settings: Settings) -> list[TextwatchError]:
    problems = []
    for check in CHECKS:
        try:
            check(settings)
        except TextwatchError as err:
            problems.append(err)
    return problems

