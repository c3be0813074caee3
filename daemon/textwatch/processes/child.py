"""What every textwatch process shares: one shape, one preamble, one way to start alone.

The shape (gunicorn's worker base class, Frigate's process util): a process
class is built from `(settings, endpoints, name, stop)`, and its constructor
opens everything it owns (sockets, the detector, the OCR engine); `run()` is
a loop of `step()` until `stop` is set or `done()` says the work ran out,
then `finish()` (drain, final stats) gives the exit code; `close()` releases
what the constructor opened, whatever happened. A constructor that fails with
a TextwatchError is a clean exit with that error's code (78 for a config
error: the supervisor stops for good instead of restarting), logged as
`<role>_cannot_start`. After every step `run()` beats the process's
`Heartbeat` (shared memory the supervisor reads): a child that stops beating
for `pipeline.hung_s` is killed and restarted (processes/supervisor.py).

The preamble (`child_main`, run by the supervisor in each spawned child):
logging with the process's name, its process title (`textwatch: NAME`, with
setproctitle), a parent-death signal so no child outlives a
killed supervisor, SIGTERM setting `stop`, SIGINT ignored (Ctrl-C reaches the
whole process group; the supervisor decides and stops children in stages).

Alone (`python -m textwatch.processes.publisher CONFIG`, the tests, and
`textwatch worker --connect` for a remote OCR worker): `run_alone` does the
same preamble minus the parent-death signal, and SIGINT stops it too.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import threading
import time
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import zmq

from textwatch import bus
from textwatch.bus import Endpoints
from textwatch.config import Settings, load_settings
from textwatch.errors import ExitCode, TextwatchError
from textwatch.log import get_logger, setup_logging

PUBLISHER_WARN_S = 5.0  # a producer still waiting for the publisher after this long says so
PUBLISHER_WARN_EVERY_S = 60.0  # and again this often while it waits


class Heartbeat:
    """A child's sign of progress to the supervisor (gunicorn's arbiter and its workers' tmp files).

    One double in shared memory (a multiprocessing RawValue made by the supervisor
    and handed to the spawned child) holding the CLOCK_MONOTONIC time of the last
    beat: the clock is the same in every process of the machine, no lock is needed
    for one aligned 8-byte store, and a stopped (SIGSTOP) or wedged process stops
    writing it. 0.0 = no beat yet (the child is starting). Without shared memory
    (a process run alone) beating does nothing.
    """

    def __init__(self, shared: Any = None) -> None:
        self.shared = shared

    def beat(self) -> None:
        if self.shared is not None:
            self.shared.value = time.monotonic()

    def last(self) -> float | None:
        """When the child last beat (time.monotonic()), None before its first beat."""
        if self.shared is None or not self.shared.value:
            return None
        return float(self.shared.value)

    def reset(self) -> None:
        """Before a (re)start: no beat yet, the start-up allowance applies."""
        if self.shared is not None:
            self.shared.value = 0.0


class Process(ABC):
    """The contract of every child: construct (open), run (loop of step), close (release)."""

    role: ClassVar[str]  # "publisher" | "worker" | "detect": the supervisor's restart rules, the stats' role
    heartbeat: Heartbeat = Heartbeat()  # set by `start`; a beat after every step is the supervisor's liveness

    def __init__(self, settings: Settings, endpoints: Endpoints, name: str, stop: threading.Event) -> None:
        self.settings = settings
        self.endpoints = endpoints
        self.name = name
        self.stop = stop

    def run(self) -> int:
        """Step until stopped or done, then finish; close in every case. Returns the exit code."""
        try:
            self.heartbeat.beat()  # constructed: the start-up allowance ends, pipeline.hung_s applies
            while not self.stop.is_set() and not self.done():
                self.step()
                self.heartbeat.beat()
            return int(self.finish())
        finally:
            self.close()

    @abstractmethod
    def step(self) -> None:
        """One pass of the loop; waits at most a fraction of a second, so `stop` is seen quickly."""

    def done(self) -> bool:
        """True when the work ran out by itself (detect: every file source ended)."""
        return False

    def finish(self) -> int:
        """After the loop: drain, publish final stats; the exit code."""
        return ExitCode.OK

    @abstractmethod
    def close(self) -> None:
        """Release what the constructor opened (sockets, contexts, engines); safe after a partial run."""

    def wait_for_publisher(self, results: zmq.Socket) -> bool:
        """Block until the publisher subscribed to this producer's `results` XPUB (True), or stop (False).

        Unbounded on purpose: what a producer sends before the publisher listens is
        dropped by ZeroMQ without a trace, so a worker takes no crop and detect reads no
        frame before then. Logged as `publisher_not_reachable` after PUBLISHER_WARN_S and
        every PUBLISHER_WARN_EVERY_S while it lasts. A supervised child is constructed
        within pipeline.start_timeout_s or is restarted (it has not beaten yet); a remote
        worker waits for its daemon. Regression: the wait used to end after 5 s with
        "taking crops anyway", so a worker still in reconnect backoff could read the
        first line of a file into nothing.
        """
        started = time.monotonic()
        wait_s = PUBLISHER_WARN_S
        while not bus.wait_for_subscriber(results, wait_s, self.stop):
            if self.stop.is_set():
                return False
            get_logger().warning(
                "publisher_not_reachable", results=self.endpoints.results,
                waited_s=round(time.monotonic() - started, 1), note="waiting: nothing is taken before it listens",
            )
            wait_s = PUBLISHER_WARN_EVERY_S
        return True


def start(
    cls: type[Process], settings: Settings, endpoints: Endpoints, name: str, stop: threading.Event,
    heartbeat: Heartbeat | None = None,
) -> int:
    """Build and run one process; a start-up TextwatchError is logged and becomes the exit code."""
    log = get_logger()
    try:
        process = cls(settings, endpoints, name, stop)
    except TextwatchError as err:
        log.error(f"{cls.role}_cannot_start", error=str(err), code=int(err.exit_code))
        return int(err.exit_code)
    if heartbeat is not None:
        process.heartbeat = heartbeat
    return process.run()


def load_class(path: str) -> type[Process]:
    """The process class named "module:Class" (gunicorn's worker-class strings): imported only in
    the process that runs it, so the supervisor itself never loads OpenCV, the detector or an OCR engine."""
    module, _, name = path.partition(":")
    cls = getattr(importlib.import_module(module), name)
    if not (isinstance(cls, type) and issubclass(cls, Process)):
        raise TypeError(f"{path} is not a textwatch process class")
    return cls


def child_main(
    class_path: str, name: str, settings: Settings, endpoints: Endpoints, log_json: bool | None,
    heartbeat: Heartbeat | None = None,
) -> None:
    """Entry point of every spawned child: identity, signals, then the process; exits with its code."""
    setup_logging("info", process=name, json=log_json)
    cls = load_class(class_path)
    set_title(f"textwatch: {name}")
    die_with_parent()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise SystemExit(_guarded(cls, settings, endpoints, name, stop, heartbeat))


def run_alone(cls: type[Process], settings: Settings, endpoints: Endpoints, name: str) -> int:
    """One process in this (main) thread, outside the supervisor: SIGTERM and SIGINT stop it."""
    set_title(f"textwatch: {name}")
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        return _guarded(cls, settings, endpoints, name, stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(cls: type[Process], default_name: str, argv: list[str] | None = None) -> int:
    """`python -m textwatch.processes.MODULE CONFIG [--name NAME]`: one process on the config's endpoints."""
    parser = argparse.ArgumentParser(prog=f"python -m {cls.__module__}", description=cls.__doc__)
    parser.add_argument("config", help="the daemon's config file")
    parser.add_argument("--name", default=default_name, help=f"process name in logs, results and stats (default {default_name})")
    args = parser.parse_args(argv)
    setup_logging("info", process=args.name)
    try:
        settings = load_settings(args.config)
        endpoints = Endpoints.from_settings(settings)
    except TextwatchError as err:
        get_logger().error(f"{cls.role}_cannot_start", error=str(err), code=int(err.exit_code))
        return int(err.exit_code)
    return run_alone(cls, settings, endpoints, args.name)


def _guarded(
    cls: type[Process], settings: Settings, endpoints: Endpoints, name: str, stop: threading.Event,
    heartbeat: Heartbeat | None = None,
) -> int:
    """`start`, with a crash logged with its traceback and turned into ExitCode.SOFTWARE (restarted)."""
    try:
        return start(cls, settings, endpoints, name, stop, heartbeat)
    except Exception:  # noqa: BLE001 - a crash is logged with its traceback, and the supervisor restarts us
        get_logger().exception("child_crashed")
        return int(ExitCode.SOFTWARE)


def die_with_parent() -> None:
    """Ask Linux to send us SIGTERM when the supervisor dies, even by SIGKILL: no orphans
    holding sockets and cameras after a crash (prctl PR_SET_PDEATHSIG)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        get_logger().warning("no_parent_death_signal", hint="children may outlive a killed supervisor")


def set_title(title: str) -> None:
    """Name the process in ps/top (`textwatch: ocr-0`); setproctitle is a dependency, the
    ImportError fallback only keeps an incomplete install running."""
    try:
        from setproctitle import setproctitle
    except ImportError:
        return
    setproctitle(title)
