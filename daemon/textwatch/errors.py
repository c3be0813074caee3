"""Error types and the exit-code contract.

Every error a user can cause is a `TextwatchError` carrying its exit code; the CLI
prints its message as one line on stderr and exits with that code (never a
traceback). The codes follow sysexits(3) so systemd can tell "fix the config"
(78, listed in RestartPreventExitStatus=) from "try again" (anything else).
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes; documented in README.md and docs/operations.md."""

    OK = 0
    PARTIAL = 1  # some inputs failed, the rest were processed
    USAGE = 2  # bad command line (argparse's own code)
    DATA = 65  # an input exists but is not a usable image/video
    NO_INPUT = 66  # an input path does not exist or cannot be opened
    UNAVAILABLE = 69  # a requested backend/engine/language is not installed
    SOFTWARE = 70  # internal error: a bug, reported with a traceback in the log
    CANT_CREATE = 73  # EX_CANTCREAT: an output file (image -o, --annotate) cannot be written
    RECYCLE = 75  # EX_TEMPFAIL: an OCR worker retiring on purpose (crop count or RSS growth); restarted at once, off budget
    CONFIG = 78  # invalid config or model files: restarting will not help
    TIMED_OUT = 124  # timeout(1)'s code: an OCR worker ended by its own watchdog, a crop past ocr.timeout_ms; replaced at once, off budget


class TextwatchError(Exception):
    """Base of all user-facing errors; `str(err)` is the one-line message."""

    exit_code: ExitCode = ExitCode.SOFTWARE


class ConfigError(TextwatchError):
    """The config file is malformed, has an unknown key or a value out of bounds."""

    exit_code = ExitCode.CONFIG


class ModelError(TextwatchError):
    """The darknet cfg/weights pair is missing, not darknet, or mismatched."""

    exit_code = ExitCode.CONFIG


class BackendUnavailable(TextwatchError):
    """A backend (cuda, opencl, torch) or OCR engine/language was asked for but is absent."""

    exit_code = ExitCode.UNAVAILABLE


class InputError(TextwatchError):
    """An input image or video cannot be used."""

    exit_code = ExitCode.DATA


class InputMissing(InputError):
    """An input path does not exist or cannot be read."""

    exit_code = ExitCode.NO_INPUT


class OutputError(TextwatchError):
    """An output file cannot be created or written (a folder that is not writable, a full disk)."""

    exit_code = ExitCode.CANT_CREATE
