"""Prometheus metrics: the publisher turns what it already sees into metrics.

Every process publishes a `stats` message (cumulative counters since it
started, plus `started` and `rss_bytes`) and every read region passes the
publisher as a `text.<camera>` result. The publisher owns one `Exporter`: it
mirrors each process's counters into prometheus-client metrics on its own
CollectorRegistry, observes OCR latency from text results, and serves them
on `metrics.listen`: prometheus_client's WSGI app (its exposition format) behind
`BoundedMetricsServer`, whose threads, connections and idle time are bounded.

Mirroring counters: a Prometheus counter only goes up, so the exporter keeps
each process's previous values and adds the difference. A process that
restarts resets its own counters: a changed `started` (or, without it, a
counter that went down) is a restart, and the new values are added whole.
The first stats of a process seen by this exporter are added whole too (the
registry starts at zero with the publisher).

Labels: `camera` is the camera id from the config (never its URL: RTSP URLs
carry passwords), `process` the process name (`publisher`, `detect-0`,
`ocr-N`, a remote worker's name). Cameras not in the config are ignored and
counted; at most MAX_PROCESSES processes are tracked, and a process silent
for `stale_s` has its series removed, so a remote pool can not grow the
registry without bound.
"""

from __future__ import annotations

import os
import queue
import re
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.metrics import MetricWrapperBase

from textwatch import wire
from textwatch.config import MetricsSettings, Settings

NAMESPACE = "textwatch"
OCR_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)  # seconds, 10 ms .. 5 s
MAX_PROCESSES = 256  # processes tracked at once; more are ignored (counted)
STALE_INTERVALS = 10  # a process silent for this many stats intervals ...
STALE_MIN_S = 60.0  # ... and at least this long has its series removed
STARTUP_SLACK_S = 30.0  # a process first seen that started this close to the exporter counts as a start
NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
OCR_STATUSES = ("text", "empty", "failed")


# ---------------------------------------------------------------- a field every process adds to its stats


def rss_bytes() -> int | None:
    """Resident memory of this process from /proc/self/statm; None where there is no /proc (not Linux)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            resident_pages = int(statm.read().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


# ---------------------------------------------------------------- the exporter


@dataclass
class _Process:
    """What the exporter remembers of one process."""

    started: float | None
    last_seen: float
    values: dict[tuple[str, ...], float] = field(default_factory=dict)  # previous counter values
    series: set[tuple[MetricWrapperBase, tuple[str, ...]]] = field(default_factory=set)  # to remove when stale


@dataclass
class _Observation:
    key: tuple[str, ...]
    value: float
    metric: Counter
    labels: tuple[str, ...]


class Exporter:
    """Stats and text results in, Prometheus metrics out; `serve` starts the HTTP endpoint."""

    def __init__(self, settings: Settings, registry: CollectorRegistry | None = None, now: float | None = None) -> None:
        self.settings = settings.metrics
        self.cameras = frozenset(camera.id for camera in settings.cameras)
        self.registry = registry if registry is not None else CollectorRegistry()
        self.started = time.time() if now is None else now
        self.stale_s = max(STALE_MIN_S, STALE_INTERVALS * settings.pipeline.stats_interval_s)
        self._processes: dict[str, _Process] = {}
        self._in_flight: dict[str, int] = {}  # camera -> crops sent minus results (negative while stats lag)
        self._server: Any = None
        self._define_metrics()

    def _define_metrics(self) -> None:
        def counter(name: str, doc: str, *labels: str) -> Counter:
            return Counter(name, doc, labels, namespace=NAMESPACE, registry=self.registry)

        def gauge(name: str, doc: str, *labels: str) -> Gauge:
            return Gauge(name, doc, labels, namespace=NAMESPACE, registry=self.registry)

        # per camera, from detect's stats
        self.frames_read = counter("frames_read", "Frames read from the source", "camera")
        self.frames_processed = counter("frames_processed", "Frames taken by the detector", "camera")
        self.frames_skipped = counter("frames_skipped", "Frames replaced by a newer one or over max_fps", "camera")
        self.reconnects = counter("reconnects", "Source reconnect attempts", "camera")
        self.stalls = counter("stalls", "Times the source delivered nothing for stall_s", "camera")
        self.read_errors = counter("read_errors", "Failed reads from the source", "camera")
        self.crops_sent = counter("crops_sent", "Crops sent to the OCR pool", "camera")
        self.source_up = gauge("source_up", "1 while the source delivers frames, else 0", "camera")
        self.crops_in_flight = gauge(
            "crops_in_flight", "Crops sent minus text results received (an estimate; lost crops stay counted)", "camera"
        )
        # per camera, from text results
        self.ocr_latency = Histogram(
            "ocr_latency_seconds", "Capture to OCR result, per read region", ["camera"],
            namespace=NAMESPACE, registry=self.registry, buckets=OCR_LATENCY_BUCKETS,
        )
        self.ocr_results = counter("ocr_results", "Text results received by the publisher", "camera", "status")
        # detect
        self.detect_frames = counter("detect_frames", "Frames run through the detector", "process")
        self.detect_batches = counter("detect_batches", "Batched detector forwards", "process")
        self.detect_seconds = counter("detect_seconds", "Time spent in detector forwards", "process")
        self.detect_batch_seconds = gauge(
            "detect_batch_seconds", "Mean time of one batched forward over the last stats interval", "process"
        )
        self.crops_dropped = counter("crops_dropped", "Crops or results dropped, by reason", "process", "reason")
        self.media_skipped = counter(
            "media_skipped", "Pictures for the view and history not made over their rate, by reason", "process", "reason"
        )
        self.gate_frames = counter(
            "gate_frames", "Frames by what the change gate did: detected, carried (no view detected), full, roi_empty",
            "process", "outcome",
        )
        self.gate_views = counter(
            "gate_views", "Detector views (whole frame, tiles): detected or carried; refreshed = detected because due "
            "(full_detect_s), counted in detected too", "process", "outcome",
        )
        self.detect_cpu_seconds = counter("detect_cpu_seconds", "CPU time of the detect process, all its threads", "process")
        # workers
        self.ocr_crops = counter("ocr_crops", "Crops read by a worker, by result status", "process", "status")
        self.ocr_seconds = counter("ocr_seconds", "Time a worker spent reading crops", "process")
        self.ocr_stale = counter(
            "ocr_stale", "Crops a worker skipped as older than pipeline.crop_max_age_s (the pool was behind); also failed",
            "process",
        )
        self.ocr_timeouts = counter(
            "ocr_timeouts", "Crops given up at ocr.timeout_ms (by the engine or the worker's watchdog); also failed", "process"
        )
        # the supervisor: it outlives every child, so these survive any restart (the publisher's included)
        self.child_starts = counter("child_starts", "Child process starts by the supervisor, the first included", "child")
        self.child_restarts = counter(
            "child_restarts", "Child replacements after a failure (crash, kill, hang): what the restart budget counts", "child"
        )
        self.child_hangs = counter("child_hangs", "Children killed for no progress within pipeline.hung_s", "child")
        self.child_recycles = counter("child_recycles", "Planned worker replacements (worker_max_crops, RSS growth)", "child")
        self.child_timed_out = counter(
            "child_timed_out", "Workers ended by their watchdog, a crop past its ocr.timeout_ms deadline", "child"
        )
        # publisher
        self.messages_forwarded = counter("messages_forwarded", "Producer messages passed to subscribers", "process")
        self.messages_rejected = counter("messages_rejected", "Malformed messages dropped", "process")
        self.subscriptions = counter("subscriptions", "Subscribe/unsubscribe messages from subscribers", "process")
        self.messages_refused = counter(
            "messages_refused", "Well-formed messages not allowed on the socket they came in on, by reason", "process", "reason"
        )
        self.subscriber_resets = counter(
            "subscriber_resets", "Every subscriber dropped at once because too many subscriptions were held", "process"
        )
        self.subscriptions_active = gauge("subscriptions_active", "Distinct topic prefixes subscribers hold", "process")
        self.frames_published = counter(
            "frames_published", "frame.<camera> messages by outcome (complete, incomplete, evicted, lost)", "process", "outcome"
        )
        self.regions_ignored = counter("regions_ignored", "Regions ignored by the aggregator, by reason", "process", "reason")
        self.regions_missing = counter(
            "regions_missing", "Regions of published frames never read (lost with a worker, or past the deadline)", "process"
        )
        self.frames_pending = gauge("frames_pending", "Frames being collected by the aggregator", "process")
        # history store
        self.history_tracks = counter("history_tracks_written", "Track events written to the history database", "process")
        self.history_crops = counter(
            "history_crops", "Crop pictures stored with their track, or dropped (no text, too many pending)", "process", "outcome"
        )
        self.history_deleted = counter("history_deleted", "Tracks deleted by retention, by reason (age, size)", "process", "reason")
        # the MQTT bridge
        self.mqtt_received = counter("mqtt_received", "Bus messages taken by the MQTT bridge", "process")
        self.mqtt_published = counter("mqtt_published", "MQTT messages handed to the broker connection", "process")
        self.mqtt_dropped = counter(
            "mqtt_dropped", "MQTT messages dropped, by reason (queue_full: the oldest, while the broker was away)",
            "process", "reason",
        )
        self.mqtt_connects = counter("mqtt_connects", "Connections the MQTT broker accepted", "process")
        self.mqtt_disconnects = counter("mqtt_disconnects", "MQTT broker connections lost", "process")
        self.mqtt_queued = gauge("mqtt_queued", "MQTT messages waiting for the broker", "process")
        self.mqtt_connected = gauge("mqtt_connected", "1 while the MQTT bridge is connected to its broker", "process")
        # every process
        self.resident_memory = gauge("process_resident_memory_bytes", "Resident memory of the process", "process")
        self.start_time = gauge("process_start_time_seconds", "When the process started, UNIX seconds", "process")
        self.starts = counter("process_starts", "Process starts seen by this exporter (restarts included)", "process")
        # the metrics endpoint itself (BoundedMetricsServer)
        self.http_dropped = counter(
            "metrics_connections_dropped",
            "Metrics HTTP connections closed unanswered, by reason (idle: nothing or half a request within "
            "idle_timeout_s; full: max_connections open)", "reason",
        )
        self.last_seen = gauge("process_last_stats_timestamp_seconds", "When the process's last stats arrived", "process")
        self.ignored = counter("exporter_ignored", "Stats or results the exporter could not use, by reason", "reason")
        self._counters_by_role: dict[str, list[tuple[str, Counter, tuple[str, ...], float]]] = {
            # stats key, metric, label values after `process`, scale
            "detect": [
                ("frames", self.detect_frames, (), 1.0),
                ("batches", self.detect_batches, (), 1.0),
                ("detect_ms_total", self.detect_seconds, (), 0.001),
            ],
            "worker": [
                ("text", self.ocr_crops, ("text",), 1.0),
                ("empty", self.ocr_crops, ("empty",), 1.0),
                ("failed", self.ocr_crops, ("failed",), 1.0),
                ("rejected", self.messages_rejected, (), 1.0),
                ("ocr_ms_total", self.ocr_seconds, (), 0.001),
                ("timeouts", self.ocr_timeouts, (), 1.0),
                ("stale", self.ocr_stale, (), 1.0),
            ],
            "supervisor": [],  # its counters are per child: _child_observations
            "publisher": [
                ("forwarded", self.messages_forwarded, (), 1.0),
                ("rejected", self.messages_rejected, (), 1.0),
                ("subscriptions", self.subscriptions, (), 1.0),
                ("subscriber_resets", self.subscriber_resets, (), 1.0),
                ("frames", self.frames_published, ("complete",), 1.0),
                ("frames_incomplete", self.frames_published, ("incomplete",), 1.0),
                ("frames_evicted", self.frames_published, ("evicted",), 1.0),
                ("frames_lost", self.frames_published, ("lost",), 1.0),
                ("frames_duplicates", self.regions_ignored, ("duplicate",), 1.0),
                ("frames_late", self.regions_ignored, ("late",), 1.0),
                ("regions_missing", self.regions_missing, (), 1.0),
            ],
            "history": [
                ("tracks_written", self.history_tracks, (), 1.0),
                ("crops_written", self.history_crops, ("written",), 1.0),
                ("crops_dropped", self.history_crops, ("dropped",), 1.0),
                ("deleted_age", self.history_deleted, ("age",), 1.0),
                ("deleted_size", self.history_deleted, ("size",), 1.0),
                ("rejected", self.messages_rejected, (), 1.0),
            ],
            "mqtt": [
                ("received", self.mqtt_received, (), 1.0),
                ("rejected", self.messages_rejected, (), 1.0),
                ("published", self.mqtt_published, (), 1.0),
                ("connects", self.mqtt_connects, (), 1.0),
                ("disconnects", self.mqtt_disconnects, (), 1.0),
            ],
        }
        self._camera_counters = {
            "frames_read": self.frames_read,
            "frames_delivered": self.frames_processed,
            "frames_skipped": self.frames_skipped,
            "reconnects": self.reconnects,
            "stalls": self.stalls,
            "read_errors": self.read_errors,
            "crops_sent": self.crops_sent,
        }

    # ------------------------------------------------------------ serving

    def serve(self) -> None:
        """Start the HTTP endpoint on metrics.listen (daemon threads, see BoundedMetricsServer); OSError when the port is taken."""
        host, port = self.settings.address()
        self._server = BoundedMetricsServer.start(
            host, port, make_wsgi_app(self.registry), self.settings,
            on_drop=lambda reason: self.http_dropped.labels(reason).inc(),
        )

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # ------------------------------------------------------------ text results

    def observe_text(self, result: wire.TextResult) -> None:
        """One read region: its latency, its status, one crop fewer in flight."""
        if result.camera not in self.cameras:
            self.ignored.labels("unknown_camera").inc()
            return
        status = result.status if result.status in OCR_STATUSES else "other"
        self.ocr_results.labels(result.camera, status).inc()
        self.ocr_latency.labels(result.camera).observe(max(0.0, result.latency_ms) / 1000.0)
        self._in_flight[result.camera] = self._in_flight.get(result.camera, 0) - 1
        self.crops_in_flight.labels(result.camera).set(max(0, self._in_flight[result.camera]))

    # ------------------------------------------------------------ stats

    def observe_stats(self, stats: wire.Stats, now: float) -> None:
        """One process's stats message (validated by wire.stats_from_dict): mirror its counters, gauges and restarts."""
        name = stats.process
        if not NAME.match(name):
            self.ignored.labels("bad_process_name").inc()
            return
        known = self._processes.get(name)
        if known is None and len(self._processes) >= MAX_PROCESSES:
            self.ignored.labels("too_many_processes").inc()
            return
        cameras = self._cameras(stats)
        observations = list(self._observations(name, stats, cameras))
        started = stats.started
        first = known is None
        if known is None:
            known = self._processes[name] = _Process(started=started, last_seen=now)
            restarted = False
            # at daemon start every process is new to us; after a publisher restart they are not
            counts_as_start = started is None or started >= self.started - STARTUP_SLACK_S
        else:
            restarted = (started is not None and started != known.started) or (
                started is None and any(o.value < known.values.get(o.key, 0.0) for o in observations)
            )
            counts_as_start = restarted
        known.started, known.last_seen = started, now
        if counts_as_start:
            self._record(known, self.starts, (name,)).inc()
        deltas = {o.key: self._mirror(known, o, whole=first or restarted) for o in observations}
        self._process_gauges(known, name, stats, now)
        self._camera_gauges(known, cameras, deltas, baseline=first and not counts_as_start)
        self._detect_latency(known, name, stats, deltas)

    def _observations(
        self, name: str, stats: wire.Stats, cameras: dict[str, wire.CameraStats]
    ) -> Iterable[_Observation]:
        """Every cumulative counter in this stats message, with the metric it mirrors into."""
        for key, metric, labels, scale in self._counters_by_role[stats.role]:
            yield _Observation((key,), float(getattr(stats, key)) * scale, metric, (name, *labels))
        if isinstance(stats, wire.DetectStats):
            for reason, count in stats.crops_dropped.items():
                if NAME.match(reason):
                    yield _Observation(("crops_dropped", reason), float(count), self.crops_dropped, (name, reason))
            for reason, count in stats.media_skipped.items():
                if NAME.match(reason):
                    yield _Observation(("media_skipped", reason), float(count), self.media_skipped, (name, reason))
            yield from self._gate_observations(name, stats)
        if isinstance(stats, wire.PublisherStats):
            for reason, count in stats.refused.items():
                if NAME.match(reason):
                    yield _Observation(("refused", reason), float(count), self.messages_refused, (name, reason))
        if isinstance(stats, wire.SupervisorStats):
            yield from self._child_observations(stats)
        if isinstance(stats, wire.MqttStats):
            for reason, count in stats.dropped.items():
                if NAME.match(reason):
                    yield _Observation(("mqtt_dropped", reason), float(count), self.mqtt_dropped, (name, reason))
        for camera, counters in cameras.items():
            for key, metric in self._camera_counters.items():
                yield _Observation(("camera", camera, key), float(getattr(counters, key)), metric, (camera,))

    def _child_observations(self, stats: wire.SupervisorStats) -> Iterable[_Observation]:
        """The supervisor's counts of each child, labelled by child name."""
        metrics = {
            "starts": self.child_starts, "restarts": self.child_restarts, "hung": self.child_hangs,
            "recycled": self.child_recycles, "timed_out": self.child_timed_out,
        }
        for child, counts in stats.children.items():
            if not NAME.match(child):
                self.ignored.labels("bad_child_name").inc()
                continue
            for key, metric in metrics.items():
                yield _Observation(("child", child, key), float(getattr(counts, key)), metric, (child,))

    def _gate_observations(self, name: str, stats: wire.DetectStats) -> Iterable[_Observation]:
        """The change gate's counters (issue 16) and the detect process's CPU time."""
        for key, count in stats.gate.items():
            kind, _, outcome = key.partition("_")
            metric = {"frames": self.gate_frames, "views": self.gate_views}.get(kind)
            if key == "roi_empty":
                metric, outcome = self.gate_frames, key
            if metric is not None and NAME.match(outcome):
                yield _Observation(("gate", key), float(count), metric, (name, outcome))
        yield _Observation(("cpu_ms_total",), stats.cpu_ms_total * 0.001, self.detect_cpu_seconds, (name,))

    def _cameras(self, stats: wire.Stats) -> dict[str, wire.CameraStats]:
        """detect's cameras that the config knows; any other is ignored and counted (its id may be a URL)."""
        if not isinstance(stats, wire.DetectStats):
            return {}
        known = {}
        for camera, counters in stats.cameras.items():
            if camera not in self.cameras:
                self.ignored.labels("unknown_camera").inc()
                continue
            known[camera] = counters
        return known

    def _mirror(self, process: _Process, observation: _Observation, whole: bool) -> float:
        """Add what the counter grew by since the last stats (all of it after a restart); returns that."""
        previous = process.values.get(observation.key)
        process.values[observation.key] = observation.value
        if whole or previous is None or observation.value < previous:
            delta = observation.value
        else:
            delta = observation.value - previous
        self._record(process, observation.metric, observation.labels).inc(delta)
        return delta

    def _process_gauges(self, process: _Process, name: str, stats: wire.Stats, now: float) -> None:
        self._record(process, self.last_seen, (name,)).set(now)
        if process.started is not None:
            self._record(process, self.start_time, (name,)).set(process.started)
        if stats.rss_bytes is not None:
            self._record(process, self.resident_memory, (name,)).set(stats.rss_bytes)
        if isinstance(stats, wire.PublisherStats):
            self._record(process, self.frames_pending, (name,)).set(stats.frames_pending)
            self._record(process, self.subscriptions_active, (name,)).set(stats.subscriptions_active)
        if isinstance(stats, wire.MqttStats):
            self._record(process, self.mqtt_queued, (name,)).set(stats.queued)
            self._record(process, self.mqtt_connected, (name,)).set(1 if stats.connected else 0)

    def _camera_gauges(
        self,
        process: _Process,
        cameras: dict[str, wire.CameraStats],
        deltas: dict[tuple[str, ...], float],
        baseline: bool,
    ) -> None:
        """source_up, and crops in flight: sent (from stats) minus answered (text results seen).

        Results usually arrive before the stats that count their crops, so the balance dips
        below zero between stats; the gauge shows max(0, balance). A process that was already
        running when this exporter started (the publisher restarted) gives a baseline: the
        crops it sent before are not counted. Crops lost with a killed worker stay counted.
        """
        for camera, counters in cameras.items():
            self._record(process, self.source_up, (camera,)).set(1 if counters.up else 0)
            sent = deltas.get(("camera", camera, "crops_sent"))
            if sent is None:
                continue
            balance = self._in_flight.get(camera, 0) + (0 if baseline else int(sent))
            self._in_flight[camera] = balance
            self._record(process, self.crops_in_flight, (camera,)).set(max(0, balance))

    def _detect_latency(
        self, process: _Process, name: str, stats: wire.Stats, deltas: dict[tuple[str, ...], float]
    ) -> None:
        batches, seconds = deltas.get(("batches",)), deltas.get(("detect_ms_total",))
        if isinstance(stats, wire.DetectStats) and batches and seconds is not None:
            self._record(process, self.detect_batch_seconds, (name,)).set(seconds / batches)

    def _record(self, process: _Process, metric: MetricWrapperBase, labels: tuple[str, ...]) -> Any:
        """metric.labels(*labels), remembered so the series goes when the process goes stale."""
        process.series.add((metric, labels))
        return metric.labels(*labels)

    # ------------------------------------------------------------ housekeeping

    def forget_stale(self, now: float) -> list[str]:
        """Remove the series of processes silent for stale_s; returns their names."""
        stale = [name for name, process in self._processes.items() if now - process.last_seen > self.stale_s]
        for name in stale:
            process = self._processes.pop(name)
            for metric, labels in process.series:
                try:
                    metric.remove(*labels)
                except KeyError:
                    pass  # already gone: another stale process shared the series (a camera)
            for camera in self.cameras:
                if ("camera", camera, "crops_sent") in process.values:
                    self._in_flight.pop(camera, None)
        return stale


# ---------------------------------------------------------------- the HTTP endpoint


class _QuietHandler(WSGIRequestHandler):
    """One request per connection (wsgiref speaks HTTP/1.0), no access log on stderr."""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        """Scrapes are not logged: a log line per scrape would drown the daemon's own lines."""


class BoundedMetricsServer(WSGIServer):
    """prometheus_client's WSGI app behind a server whose threads and connections are bounded.

    Regression (issue 22): prometheus_client's `start_http_server` starts a thread per
    connection and never times one out, so 50 idle connections held 50 threads for ever.
    Here one loop thread accepts connections and keeps them in a selector until they send
    their first bytes; only then does one of `handler_threads` fixed threads read and
    answer the request, with `idle_timeout_s` on every socket read and write. Idle
    connections therefore cost no thread, and /metrics keeps answering while they are
    held: a connection silent for `idle_timeout_s` is closed by the loop, one that stalls
    mid-request by its handler's socket timeout, and beyond `max_connections` open at once
    a new one is closed at once. Each closed-unanswered connection goes to `on_drop`
    with its reason ("idle", "full"), which the exporter counts.
    """

    request_queue_size = 128  # listen backlog (socketserver's 5 made a burst of connects wait 1 s for a SYN retry)

    def __init__(
        self, address: tuple[str, int], app: Callable[..., Any], settings: MetricsSettings,
        on_drop: Callable[[str], None], family: socket.AddressFamily = socket.AF_INET,
    ) -> None:
        self.address_family = family
        super().__init__(address, _QuietHandler)
        self.set_app(app)
        self.socket.setblocking(False)
        self.limits = settings
        self._on_drop = on_drop
        self._selector = selectors.DefaultSelector()
        self._selector.register(self.socket, selectors.EVENT_READ, None)
        self._ready: queue.SimpleQueue[tuple[socket.socket, Any] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()  # every accepted connection not closed yet
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    @classmethod
    def start(
        cls, host: str, port: int, app: Callable[..., Any], settings: MetricsSettings, on_drop: Callable[[str], None]
    ) -> BoundedMetricsServer:
        """Bind HOST:PORT (OSError when taken) and start the loop and handler threads (daemon threads)."""
        family, _, _, _, sockaddr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        server = cls((sockaddr[0], port), app, settings, on_drop, family)
        server._start_threads()
        return server

    def _start_threads(self) -> None:
        loop = threading.Thread(target=self.serve_forever, name="metrics-http", daemon=True)
        handlers = [
            threading.Thread(target=self._handle_ready, name=f"metrics-http-{n}", daemon=True)
            for n in range(self.limits.handler_threads)
        ]
        self._threads = [loop, *handlers]
        for thread in self._threads:
            thread.start()

    # ---- the loop thread

    def serve_forever(self, poll_interval: float = 0.25) -> None:
        """Accept, wait for each connection's first bytes (or its idle deadline), hand it on."""
        while not self._stopping.is_set():
            for key, _ in self._selector.select(timeout=poll_interval):
                if key.data is None:
                    self._accept()
                else:
                    self._selector.unregister(key.fileobj)
                    self._ready.put((key.fileobj, key.data[0]))
            self._close_idle(time.monotonic())

    def _accept(self) -> None:
        """Take every connection waiting in the backlog."""
        while not self._stopping.is_set():
            try:
                connection, address = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # e.g. EMFILE: try again a little later rather than end the endpoint, or spin
                self._stopping.wait(0.1)
                return
            self._admit(connection, address)

    def _admit(self, connection: socket.socket, address: Any) -> None:
        """Hold a new connection until it sends (or its idle deadline), or close it at once when full."""
        with self._lock:
            full = len(self._open) >= self.limits.max_connections
            if not full:
                self._open.add(connection)
        if full:
            connection.close()
            self._on_drop("full")
            return
        connection.setblocking(True)
        connection.settimeout(self.limits.idle_timeout_s)
        deadline = time.monotonic() + self.limits.idle_timeout_s
        self._selector.register(connection, selectors.EVENT_READ, (address, deadline))

    def _close_idle(self, now: float) -> None:
        expired = [
            key.fileobj for key in list(self._selector.get_map().values())
            if key.data is not None and key.data[1] <= now
        ]
        for connection in expired:
            self._selector.unregister(connection)
            self._close(connection)
            self._on_drop("idle")

    # ---- the handler threads

    def _handle_ready(self) -> None:
        while (item := self._ready.get()) is not None:
            connection, address = item
            try:
                self.finish_request(connection, address)
            except TimeoutError:  # stopped mid-request (or stopped reading the answer) for idle_timeout_s
                self._on_drop("idle")
            except OSError:  # the client went away: its own doing, nothing of ours was lost
                pass
            except Exception:  # noqa: BLE001 - a bug in one request must not end the endpoint
                self.handle_error(connection, address)
            finally:
                self._close(connection)

    def _close(self, connection: socket.socket) -> None:
        with self._lock:
            self._open.discard(connection)
        self.shutdown_request(connection)

    def handle_error(self, request: Any, client_address: Any) -> None:
        from textwatch.log import get_logger

        get_logger().exception("metrics_request_failed")

    # ---- stopping

    def shutdown(self) -> None:
        """Stop the loop and the handlers; connections being answered are cut (their threads wake at once)."""
        self._stopping.set()
        for _ in self._threads[1:]:
            self._ready.put(None)
        with self._lock:
            open_connections = list(self._open)
        for connection in open_connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for thread in self._threads:
            thread.join(timeout=2.0)

    def server_close(self) -> None:
        super().server_close()
        for key in list(self._selector.get_map().values()):
            if key.data is not None:
                self._close(key.fileobj)
        self._selector.close()
