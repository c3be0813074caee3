"""The MQTT bridge process: the daemon's track texts, camera state and source events on an MQTT broker.

    publisher XPUB --SUB (track.*, event.*, stats)--> bridge --paho-mqtt--> broker --> Home Assistant, Node-RED, ...

`textwatch run` starts it as the child `mqtt` when `mqtt.enabled` (after the
publisher, before detect, so it hears the first source_up); `textwatch mqtt -c
CONFIG` runs it alone, bridging the config's own daemon or, with mqtt.source
(`--source`), a remote daemon's publish endpoint (a CURVE client with the
bus.curve_client_* keys).

Topics (docs/mqtt.md has the payloads, wire.py the formats):

    <topic_prefix>/<camera>/text     MqttTrackText: new, updated, ended (QoS mqtt.qos_text)
    <topic_prefix>/<camera>/state    MqttCameraState, retained: status, latest text, live tracks, known strings
    <topic_prefix>/<camera>/events   SourceEvent: source_up, source_down
    <topic_prefix>/availability      "online" / "offline", retained; the last will says "offline"
    <discovery_prefix>/.../config    Home Assistant discovery, retained (comms/homeassistant.py)

Availability is "online" while the broker connection is up and the daemon's
bus was heard within mqtt.bus_silence_s (every process publishes stats every
pipeline.stats_interval_s), so a dead remote daemon reads offline too. After
each (re)connect the bridge sends availability, the discovery configs and every
camera's state again (a restarted broker may have lost its retained messages),
and again when Home Assistant announces itself on `<discovery_prefix>/status`.

Never slowing the pipeline: the daemon's XPUB drops for a slow subscriber,
never waits (bus.MQTT_BRIDGE_RCVHWM); the bridge's own loop never waits for the
broker (comms/mqtt.py: the Outbox drops its oldest message when full, counted
as `dropped.queue_full` in MqttStats, mirrored into textwatch_mqtt_dropped_total).
"""

from __future__ import annotations

import argparse
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import zmq

from textwatch import bus, metrics, wire
from textwatch.comms.homeassistant import discovery_messages
from textwatch.comms.mqtt import OFFLINE, ONLINE, Message, MqttLink, Outbox
from textwatch.comms.state import CameraBook
from textwatch.config import Settings, load_settings
from textwatch.errors import ConfigError, ExitCode, TextwatchError
from textwatch.log import get_logger, setup_logging
from textwatch.processes import child
from textwatch.processes.child import Process

NAME = "mqtt"
POLL_MS = 100  # longest sleep on the bus: how quickly stop, reconnects and timeouts are seen
BATCH = 512  # bus messages taken per step
FLUSH_BATCH = 256  # MQTT messages handed to paho per step (its QoS 0 queue is not bounded by paho)
DRAIN_S = 0.5  # at stop: how long the last bus messages (final gone events) are still taken


@dataclass
class BridgeCounters:
    received: int = 0
    rejected: int = 0
    published: int = 0
    dropped: dict[str, int] = field(default_factory=dict)


class MqttBridge(Process):
    """Bus in, MQTT out: text events through the bounded outbox, states and announcements as they change."""

    role = "mqtt"

    def __init__(self, settings: Settings, endpoints: bus.Endpoints, name: str, stop: threading.Event) -> None:
        super().__init__(settings, endpoints, name, stop)
        self.mqtt = settings.mqtt
        self.log = get_logger()
        self.started = time.time()
        self.counters = BridgeCounters()
        self.book = CameraBook(settings)
        self.outbox = Outbox(self.mqtt.queue)
        self.link = MqttLink(self.mqtt)  # ConfigError for unusable TLS files or credentials: exit 78
        self.source = self.mqtt.source or endpoints.publish_local
        ctx = zmq.Context.instance()
        curve = bus.ClientCurve.from_settings(settings) if self.source.startswith("tcp://") else None
        self.sub = bus.bridge_subscriber(ctx, self.source, curve)
        self.stats_pub = bus.result_publisher(ctx, endpoints.results) if endpoints.results else None
        self.born = time.monotonic()
        self.heard: float | None = None  # monotonic time of the last bus message
        self.connects_seen = 0
        self.announced: str | None = None  # availability sent on this connection
        self.pending: list[Message] = []  # availability, discovery: sent before the outbox
        self.next_stats = time.monotonic() + settings.pipeline.stats_interval_s
        self.link.start([f"{self.mqtt.discovery_prefix}/status"] if self.mqtt.discovery else [])
        self.log.info("mqtt_bridge_started", source=self.source, cameras=sorted(self.book.cameras))

    # ------------------------------------------------------------ the loop

    def step(self) -> None:
        """Bus messages in (waits up to POLL_MS), then the connection's news, then out to the broker, then stats."""
        if self.sub.poll(POLL_MS, zmq.POLLIN):
            self.take_bus()
        self.follow_link()
        self.flush()
        if time.monotonic() >= self.next_stats:
            self.publish_stats()
            self.next_stats = time.monotonic() + self.settings.pipeline.stats_interval_s

    def done(self) -> bool:
        return self.link.fatal is not None

    def finish(self) -> int:
        """Refused for good: one clear line, exit 78. Else take the last events, send what can go, final stats."""
        if self.link.fatal is not None:
            self.log.error("mqtt_refused", error=self.link.fatal, code=int(ExitCode.CONFIG))
            return int(ExitCode.CONFIG)
        deadline = time.monotonic() + DRAIN_S
        while time.monotonic() < deadline and self.sub.poll(50, zmq.POLLIN):
            self.take_bus()
        self.flush()
        self.publish_stats()
        self.log.info("mqtt_bridge_stopped", **self.stats_fields())
        return int(ExitCode.OK)

    def close(self) -> None:
        self.link.close()
        self.sub.close()
        if self.stats_pub is not None:
            self.stats_pub.close()

    # ------------------------------------------------------------ bus in

    def take_bus(self) -> None:
        for _ in range(BATCH):
            try:
                frames = self.sub.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self.counters.received += 1
            self.heard = time.monotonic()
            try:
                self.take(frames)
            except (wire.WireError, ValueError) as err:
                self.counters.rejected += 1
                self.log.warning("message_rejected", reason=str(err))

    def take(self, frames: list[bytes]) -> None:
        """One bus message: a track event (text out, state), a source event (events out, state) or stats."""
        topic, payload = wire.decode_published(frames)
        kind = topic.partition(".")[0]
        if kind == wire.TOPIC_TRACK:
            for text in self.book.take_track(wire.track_event_from_dict(payload)):
                self.queue(text.camera, "text", wire.encode_mqtt(text), self.mqtt.qos_text, self.mqtt.retain_text)
        elif kind == wire.TOPIC_EVENT:
            event = wire.source_event_from_dict(payload)
            self.book.take_source(event)
            self.queue(event.camera, "events", wire.encode_mqtt(event), self.mqtt.qos_events, self.mqtt.retain_events)
        elif topic == wire.TOPIC_STATS and payload.get("role") == "detect":
            stats = wire.stats_from_dict(payload)
            if isinstance(stats, wire.DetectStats):
                self.book.take_detect_stats(stats)

    def queue(self, camera: str, leaf: str, payload: bytes, qos: int, retain: bool) -> None:
        """Straight to paho when nothing waits before it (order kept); else into the outbox, which may drop."""
        message = Message(f"{self.mqtt.topic_prefix}/{camera}/{leaf}", payload, qos, retain)
        if not self.pending and not self.outbox.messages and self.send(message):
            return
        dropped = self.outbox.dropped
        self.outbox.put(message)
        if self.outbox.dropped > dropped:
            self.count_drop("queue_full")

    # ------------------------------------------------------------ the connection

    def follow_link(self) -> None:
        """A new connection: announce everything again. Home Assistant back: discovery again. Availability as due."""
        connects = self.link.connects
        if connects != self.connects_seen:
            self.connects_seen = connects
            self.announced = None
            self.pending = self.discovery()
            self.book.mark_all_dirty()
        for topic, payload in self.link.take_incoming():
            if topic == f"{self.mqtt.discovery_prefix}/status" and payload == b"online":
                self.log.info("mqtt_homeassistant_online", hint="discovery sent again")
                self.pending += self.discovery()
                self.book.mark_all_dirty()
        wanted = self.availability()
        if wanted is not None and self.link.is_connected() and wanted != self.announced:
            self.pending.insert(0, Message(self.link.availability, wanted.encode(), self.mqtt.qos_availability, True))
            self.announced = wanted
            self.log.info("mqtt_availability", availability=wanted)

    def availability(self) -> str | None:
        """online while the bus is heard; offline after bus_silence_s without it; None (say nothing yet) at start."""
        now = time.monotonic()
        if self.heard is not None and now - self.heard < self.mqtt.bus_silence_s:
            return ONLINE
        if self.heard is None and now - self.born < self.mqtt.bus_silence_s:
            return None
        return OFFLINE

    def discovery(self) -> list[Message]:
        if not self.mqtt.discovery:
            return []
        return [Message(topic, payload, self.mqtt.qos_state, True)
                for topic, payload in discovery_messages(self.mqtt, self.settings.cameras)]

    # ------------------------------------------------------------ out to the broker

    def flush(self) -> None:
        """Announcements, then the outbox (oldest first), then the changed states: while paho takes them."""
        budget = FLUSH_BATCH
        while self.pending and budget > 0:
            if not self.send(self.pending[0]):
                return
            self.pending.pop(0)
            budget -= 1
        while self.outbox.messages and budget > 0:
            if not self.send(self.outbox.messages[0]):
                return
            self.outbox.messages.popleft()
            budget -= 1
        if budget > 0 and self.link.is_connected():
            self.send_states()

    def send_states(self) -> None:
        states = self.book.take_dirty()
        for index, state in enumerate(states):
            topic = f"{self.mqtt.topic_prefix}/{state.camera}/state"
            if not self.send(Message(topic, wire.encode_mqtt(state), self.mqtt.qos_state, self.mqtt.retain_state)):
                self.book.dirty.update(s.camera for s in states[index:])
                return

    def send(self, message: Message) -> bool:
        """True when paho took it (or refused it for good: dropped, counted); False to keep it for later."""
        try:
            taken = self.link.publish(message)
        except (OSError, ValueError) as err:
            self.count_drop("refused")
            self.log.warning("mqtt_publish_refused", topic=message.topic, error=str(err))
            return True
        if taken:
            self.counters.published += 1
        return taken

    def count_drop(self, reason: str) -> None:
        self.counters.dropped[reason] = self.counters.dropped.get(reason, 0) + 1

    # ------------------------------------------------------------ stats

    def stats_fields(self) -> dict[str, object]:
        c = self.counters
        return {"received": c.received, "rejected": c.rejected, "published": c.published,
                "dropped": dict(c.dropped), "queued": len(self.outbox), "connects": self.link.connects,
                "disconnects": self.link.disconnects, "connected": self.link.is_connected()}

    def publish_stats(self) -> None:
        """MqttStats on the bus (the local publisher validates them and feeds the metrics); never waits."""
        if self.stats_pub is None:
            return
        stats = wire.MqttStats(process=self.name, ts=time.time(), started=self.started,
                               rss_bytes=metrics.rss_bytes(), **self.stats_fields())  # type: ignore[arg-type]
        bus.drain_subscriptions(self.stats_pub)
        try:
            self.stats_pub.send_multipart(wire.encode_published(wire.TOPIC_STATS, stats), zmq.NOBLOCK)
        except zmq.Again:
            self.count_drop("stats_full")


# ---------------------------------------------------------------- `textwatch mqtt`


def add_mqtt_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", type=Path, help="config file with the [mqtt] section (default: built-in defaults)")
    parser.add_argument("--source", help="a daemon's publish endpoint, tcp://HOST:PORT (default: mqtt.source, "
                        "else this config's own daemon)")
    parser.add_argument("--name", default=NAME, help=f"process name in logs and stats (default {NAME})")


def run_mqtt_cli(args: argparse.Namespace) -> int:
    """`textwatch mqtt`: the bridge alone, in this process; SIGTERM or Ctrl-C stop it (exit 0), 78 for config errors."""
    setup_logging("info", process=args.name)
    try:
        settings = load_settings(args.config)
        if args.source:
            settings.mqtt.source = checked_source(args.source)
        endpoints = bus.Endpoints.from_settings(settings)
    except TextwatchError as err:
        get_logger().error("mqtt_cannot_start", error=str(err), code=int(err.exit_code))
        return int(err.exit_code)
    return child.run_alone(MqttBridge, settings, endpoints, args.name)


def checked_source(endpoint: str) -> str:
    if not endpoint.startswith(("tcp://", "ipc://")):
        raise ConfigError(f"--source {endpoint!r} is not a ZeroMQ endpoint (tcp://HOST:PORT or ipc://PATH)")
    return endpoint


if __name__ == "__main__":
    raise SystemExit(child.main(MqttBridge, NAME))
