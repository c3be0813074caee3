"""The supervisor: `textwatch run` starts, watches, restarts and stops the processes.

Modelled on gunicorn's arbiter. Signal handlers only put the signal on a queue;
one loop takes them off and dispatches `handle_<signal>`. Children:

    publisher      XSUB/XPUB proxy + frame aggregator (processes/publisher.py)
    mqtt           the MQTT bridge, when mqtt.enabled (processes/mqtt.py)
    ocr-N          OCR workers (processes/ocr.py), N = bus.local_workers
    detect-0       capture + detection (processes/detect.py)
    history        the history store, when history.enabled (processes/history.py)

started in that order so nothing is sent before its receiver exists. Each is
a `child.Process`, named in PROCESS_CLASSES and started by `child.child_main`
in a spawned interpreter (the one preamble: name, title, parent-death signal,
signals). A child
that dies is restarted through its spec, within a budget (N restarts in M
seconds; past it the daemon exits 1 and systemd decides). Exit codes are a
contract: a child exiting 78 (config error) stops the daemon with 78 for good;
the detect process exiting 0 means its sources ended (files), which shuts the
daemon down cleanly; a worker exiting 75 (ExitCode.RECYCLE) retired on purpose
(pipeline.worker_max_crops / worker_max_rss_growth_mb) and is replaced at once
without counting against the budget (`worker_recycled` in the log).

Shutdown is staged: stop capture (TERM detect), give in-flight crops up to
`shutdown_grace_s` to be read (workers drain their queue and exit on TERM),
stop the publisher, KILL whatever outlives its deadline, reap, exit 0.

Liveness by progress (gunicorn's arbiter): every child beats a child.Heartbeat
(shared memory) after each step of its loop. One silent for `pipeline.hung_s`
(before its first beat: `pipeline.start_timeout_s`) is killed with SIGKILL,
logged as `child_hung` and restarted through the normal path (the restart
budget counts it). A worker that ends itself past a crop's deadline exits 124
(ExitCode.TIMED_OUT, processes/ocr.py's watchdog) and is replaced at once,
off budget, like a recycled one.

The supervisor owns the restart counts (they outlive every child): it publishes
them as its own `stats` message (wire.SupervisorStats, role "supervisor") on the
results bus every `stats_interval_s` and at once after a restart, so the
metrics exporter (in the publisher) has them again after any restart, its own
included.

Under systemd (Type=notify) the supervisor also reads the children's `stats`
off the bus and tells systemd READY=1, WATCHDOG=1 (only while frames or crops
move), STATUS= and STOPPING=1: see textwatch.processes.systemd.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import signal
import time
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.context import SpawnProcess

import zmq

from textwatch import bus, wire
from textwatch.bus import Endpoints
from textwatch.config import Settings
from textwatch.errors import ExitCode
from textwatch.log import get_logger
from textwatch.metrics import rss_bytes
from textwatch.processes import child
from textwatch.processes.systemd import ServiceNotifier

SPAWN = mp.get_context("spawn")  # no fork: children must not inherit threads or ZeroMQ contexts
TICK_S = 0.2
MQTT_STOP_S = 5.0  # the bridge's last messages and its "offline" to the broker


@dataclass
class ChildSpec:
    """How to (re)start one child: its name and its role (which process class, which restart rules)."""

    name: str
    role: str  # "publisher" | "worker" | "detect": see PROCESS_CLASSES
    restarts: deque[float] = field(default_factory=deque)
    process: SpawnProcess | None = None
    starts: int = 0
    recycles: int = 0  # planned replacements (ExitCode.RECYCLE), not failures
    heartbeat: child.Heartbeat = field(default_factory=lambda: child.Heartbeat(SPAWN.RawValue("d", 0.0)))
    spawned_at: float = 0.0  # time.monotonic() of the last spawn: the start-up allowance runs from here
    hung: int = 0  # killed for silence (child_hung)
    timed_out: int = 0  # workers that ended themselves past a crop's deadline (ExitCode.TIMED_OUT), not failures

    def counts(self) -> wire.ChildCounts:
        """What the supervisor's stats say of this child."""
        restarts = max(0, self.starts - 1 - self.recycles - self.timed_out)
        return wire.ChildCounts(
            starts=self.starts, restarts=restarts, hung=self.hung, recycled=self.recycles, timed_out=self.timed_out
        )

# The class each role runs, by name: the supervisor never imports them (child.load_class does, in the child).
PROCESS_CLASSES = {
    "publisher": "textwatch.processes.publisher:Publisher",
    "worker": "textwatch.processes.ocr:OcrWorker",
    "detect": "textwatch.processes.detect:DetectProcess",
    "history": "textwatch.processes.history:HistoryProcess",
    "mqtt": "textwatch.processes.mqtt:MqttBridge",
}


def child_specs(settings: Settings) -> list[ChildSpec]:
    """publisher, history (when enabled), ocr-0..N-1, detect-0: the start order (nothing is sent before its receiver exists)."""
    specs = [ChildSpec("publisher", "publisher")]
    if settings.history.enabled:  # after the publisher (it subscribes there), before anything is detected
        specs.append(ChildSpec("history", "history"))
    if settings.mqtt.enabled:  # the MQTT bridge: after the publisher, before detect (it hears the first source_up)
        specs.append(ChildSpec("mqtt", "mqtt"))
    specs += [ChildSpec(f"ocr-{i}", "worker") for i in range(bus.local_workers(settings))]
    specs.append(ChildSpec("detect-0", "detect"))
    return specs


class Supervisor:
    def __init__(
        self, settings: Settings, log_json: bool | None = None, signals: queue.SimpleQueue[int] | None = None
    ) -> None:
        self.settings = settings
        self.endpoints = Endpoints.from_settings(settings)
        self.specs = child_specs(settings)
        # `textwatch run` queues signals from its first instant (cli.EarlySignals) and hands its queue over
        self.signals: queue.SimpleQueue[int] = signals if signals is not None else queue.SimpleQueue()
        self.log = get_logger()
        self.log_json = log_json
        self.exit_code: int | None = None
        self.systemd: ServiceNotifier | None = None
        self.started = time.time()
        self.stats_socket: zmq.Socket | None = None  # the supervisor's own stats, onto the results bus
        self.next_stats = 0.0

    # ------------------------------------------------------------ main loop

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, lambda signum, _frame: self.signals.put(signum))
        workers = tuple(s.name for s in self.specs if s.role == "worker")
        self.systemd = ServiceNotifier.from_environment(self.settings, self.endpoints.publish_local, workers, self.log)
        self.stats_socket = bus.result_publisher(zmq.Context.instance(), self.endpoints.results)
        for spec in self.specs:
            self.spawn(spec)
        self.log.info("daemon_started", children=[s.name for s in self.specs], publish=self.endpoints.publish)
        try:
            while self.exit_code is None:
                self.step()
            self.shutdown()
        finally:
            if self.systemd is not None:
                self.systemd.close()
            self.stats_socket.close(linger=0)
        return self.exit_code

    def step(self) -> None:
        """One tick: a signal (waits up to TICK_S for one), the children, then what systemd hears."""
        self.dispatch_signals()
        if self.exit_code is None:
            self.kill_hung(time.monotonic())
            self.reap()
        if self.exit_code is None:
            self.publish_stats_when_due(time.monotonic())
        if self.exit_code is None and self.systemd is not None:
            self.systemd.tick(time.monotonic(), self.worker_restarts())

    def dispatch_signals(self) -> None:
        try:
            signum = self.signals.get(timeout=TICK_S)
        except queue.Empty:
            return
        handler = getattr(self, f"handle_{signal.Signals(signum).name.lower()}", None)
        if handler is not None:
            handler()

    def handle_sigterm(self) -> None:
        self.log.info("stopping", reason="SIGTERM")
        self.exit_code = ExitCode.OK

    def handle_sigint(self) -> None:
        self.log.info("stopping", reason="SIGINT")
        self.exit_code = ExitCode.OK

    def handle_sighup(self) -> None:
        self.log.info("sighup_ignored", hint="restart the service to reload its config")

    # ------------------------------------------------------------ children

    def spawn(self, spec: ChildSpec) -> None:
        spec.process = SPAWN.Process(
            target=child.child_main,
            args=(PROCESS_CLASSES[spec.role], spec.name, self.settings, self.endpoints, self.log_json, spec.heartbeat),
            name=spec.name,
            daemon=False,
        )
        spec.heartbeat.reset()
        spec.spawned_at = time.monotonic()
        spec.process.start()
        spec.starts += 1
        self.log.info("child_started", child=spec.name, pid=spec.process.pid)
        if spec.starts > 1:
            self.next_stats = 0.0  # a restart: the counts go out at once

    def worker_restarts(self) -> int:
        """Worker restarts after failures; planned recycles and crop time-outs are not counted."""
        return sum(spec.counts().restarts for spec in self.specs if spec.role == "worker" and spec.starts)

    def reap(self) -> None:
        """Look at every child once: restart the dead, or decide the daemon's fate."""
        for spec in self.specs:
            process = spec.process
            if process is None or process.is_alive():
                continue
            code = process.exitcode
            if spec.role == "worker" and code == ExitCode.RECYCLE:
                spec.recycles += 1
                self.log.info("worker_recycled", child=spec.name, pid=process.pid, recycles=spec.recycles)
                self.spawn(spec)
                continue
            if spec.role == "worker" and code == ExitCode.TIMED_OUT:
                spec.timed_out += 1
                self.log.warning("worker_timed_out", child=spec.name, pid=process.pid, timed_out=spec.timed_out)
                self.spawn(spec)
                continue
            self.log.warning("child_exited", child=spec.name, code=code)
            if code == ExitCode.CONFIG:
                self.log.error("config_error_in_child", child=spec.name)
                self.exit_code = ExitCode.CONFIG
                return
            if spec.role == "detect" and code == ExitCode.OK:
                self.log.info("sources_finished")
                self.exit_code = ExitCode.OK
                return
            if not self.within_budget(spec):
                self.log.error("restart_budget_exhausted", child=spec.name, budget=self.settings.pipeline.restart_budget)
                self.exit_code = 1
                return
            self.spawn(spec)

    def kill_hung(self, now: float) -> None:
        """SIGKILL every live child silent past its limit; `reap` then restarts it like any dead child.

        SIGKILL, not SIGTERM: a hung child is stopped (SIGSTOP), or stuck in C code that
        does not look at signals, or deadlocked; none of them would act on a TERM."""
        for spec in self.specs:
            process = spec.process
            if process is None or not process.is_alive():
                continue
            silent_s, limit_s = self.silence(spec, now)
            if silent_s <= limit_s:
                continue
            spec.hung += 1
            self.log.warning(
                "child_hung", child=spec.name, pid=process.pid, silent_s=round(silent_s, 2), limit_s=limit_s,
                starting=spec.heartbeat.last() is None, hung=spec.hung,
            )
            process.kill()
            process.join(2.0)

    def silence(self, spec: ChildSpec, now: float) -> tuple[float, float]:
        """(seconds without a beat, the limit that applies): pipeline.hung_s once the child has
        beaten, pipeline.start_timeout_s from its spawn until then (model load, first camera)."""
        last = spec.heartbeat.last()
        if last is None:
            return now - spec.spawned_at, self.settings.pipeline.start_timeout_s
        return now - last, self.settings.pipeline.hung_s

    def publish_stats_when_due(self, now: float) -> None:
        """The supervisor's own stats (every child's counts), every stats_interval_s and right after a restart."""
        if now < self.next_stats or self.stats_socket is None:
            return
        self.next_stats = now + self.settings.pipeline.stats_interval_s
        bus.drain_subscriptions(self.stats_socket)
        stats = wire.SupervisorStats(
            process="supervisor", ts=time.time(), children={spec.name: spec.counts() for spec in self.specs},
            started=self.started, rss_bytes=rss_bytes(),
        )
        try:
            self.stats_socket.send_multipart(wire.encode_published(wire.TOPIC_STATS, stats), zmq.NOBLOCK)
        except zmq.Again:
            pass  # PUB semantics: nobody listening (the publisher restarting); the next stats carry the same counts

    def within_budget(self, spec: ChildSpec) -> bool:
        """Record a restart; False once more than `restart_budget` fall inside the window."""
        now = time.monotonic()
        window = self.settings.pipeline.restart_window_s
        while spec.restarts and now - spec.restarts[0] > window:
            spec.restarts.popleft()
        spec.restarts.append(now)
        return len(spec.restarts) <= self.settings.pipeline.restart_budget

    # ------------------------------------------------------------ shutdown

    def shutdown(self) -> None:
        """Stop capture, let workers drain up to the grace period, stop the publisher."""
        grace = self.settings.pipeline.shutdown_grace_s
        if self.systemd is not None:
            self.systemd.stopping(self.exit_code)
        self.stop_role("detect", deadline=grace)
        self.stop_role("worker", deadline=grace)
        self.stop_role("publisher", deadline=2.0)
        self.stop_role("history", deadline=3.0)  # last: it writes the gone events the publisher flushed
        self.stop_role("mqtt", deadline=MQTT_STOP_S)  # after the publisher: it bridges the final gone events
        self.log.info("daemon_stopped", code=self.exit_code)

    def stop_role(self, role: str, deadline: float) -> None:
        procs = [s.process for s in self.specs if s.role == role and s.process is not None]
        for process in procs:
            if process.is_alive():
                process.terminate()
        end = time.monotonic() + deadline
        for process in procs:
            process.join(max(0.0, end - time.monotonic()))
            if process.is_alive():
                self.log.warning("child_killed", child=process.name, after_s=deadline)
                process.kill()
                process.join(2.0)
