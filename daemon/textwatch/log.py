"""Logging: structlog JSON lines on stderr under systemd, console-pretty on a terminal.

Each process binds its identity (`process=` name) once, so every line says who
wrote it. Secrets never reach a log line: camera URLs go through `redact_url`
before they are bound or formatted.
"""

from __future__ import annotations

import logging
import re
import sys

import structlog

# userinfo runs to the LAST "@" before the path: a password may hold "@" itself. The scheme may
# be mistyped with one slash or none (`rtsp:/admin:pw@cam`): check prints such URLs in its errors.
_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*:/{0,2})[^/\s]*@")
# Credentials in a query string, as MJPEG and snapshot URLs carry them (?user=admin&pwd=...).
_QUERY_SECRETS = re.compile(
    r"(?P<key>[?&;](?:pwd|pass|passwd|password|token|access_token|auth|key|api_key|apikey|secret|signature|sig)=)"
    r"[^&;#\s]*?(?=[&;#\s]|:\s|:?$)",  # the value, but not the ": " of a message around the URL
    re.IGNORECASE,
)


def redact_url(text: str) -> str:
    """Replace `user:password@` in any URL inside `text` with `***@`, and the value of any
    credential-looking query parameter (`pwd=`, `password=`, `token=`, ...) with `***`.

    Regression: a password holding "@" showed its tail (`rtsp://***@PW2x@host`), and
    `?pwd=...` went into logs and published event.<camera> messages in clear.
    """
    return _QUERY_SECRETS.sub(r"\g<key>***", _CREDENTIALS.sub(r"\g<scheme>***@", text))


def setup_logging(level: str = "warning", process: str = "cli", json: bool | None = None) -> None:
    """Configure structlog for this process; JSON unless stderr is a terminal."""
    as_json = (not sys.stderr.isatty()) if json is None else json
    # JSON lines carry the traceback as a string field ("exception"); the console renderer
    # formats exc_info itself. Regression: JSON logs said `"exc_info": true` and dropped
    # the traceback of every crash, so "the log has the traceback" was not true under systemd.
    renderers: list[structlog.typing.Processor] = (
        [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
        if as_json
        else [structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())]
    )
    def add_process(_logger: object, _method: str, event: dict) -> dict:
        # A process-wide identity: contextvars do not reach threads (camera readers).
        event.setdefault("process", process)
        return event

    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            add_process,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            *renderers,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


def get_logger(**bound: object) -> structlog.typing.FilteringBoundLogger:
    return structlog.get_logger(**bound)
