"""The MQTT side of the bridge: one paho-mqtt client and the bounded outbox in front of it.

paho-mqtt 2.x runs the network on its own thread (`loop_start`): it connects,
reconnects with capped exponential backoff (mqtt.reconnect_min_s doubling up
to reconnect_max_s), keeps the connection alive and resends QoS 1/2 messages
the broker had not acknowledged. Its callbacks only set flags and counters
here; the bridge's loop (processes/mqtt.py) reads them and decides.

Nothing the bridge does on the ZeroMQ side ever waits for the broker:
`publish` hands a message to paho only while connected and paho's own queue
(PAHO_QUEUE unacknowledged QoS>0 messages) has room, and returns False at once
otherwise; the message then waits in the `Outbox`, which holds at most
mqtt.queue messages and drops the oldest beyond that, counting each drop.

The connection announces the bridge on `<topic_prefix>/availability`
(retained): "online" once connected (the bridge sends it), "offline" when it
stops (sent before disconnecting) and, as the MQTT last will, "offline" when
the broker loses the connection without a goodbye (a killed daemon, a dead
host). A broker that refuses our credentials (CONNACK "bad user name or
password", "not authorized") is a configuration error: retrying cannot help,
so `fatal` says why and the bridge exits 78. The password is passed to paho
and never logged.
"""

from __future__ import annotations

import os
import socket
import ssl
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from textwatch.config import MqttSettings
from textwatch.errors import ConfigError
from textwatch.log import get_logger

USERNAME_ENV = "TEXTWATCH_MQTT_USERNAME"
PASSWORD_ENV = "TEXTWATCH_MQTT_PASSWORD"
ONLINE, OFFLINE = "online", "offline"
# CONNACK reason codes (MQTT 5 numbering; paho maps 3.1.1's 2, 4 and 5 onto them) that no retry can fix.
REFUSED_FOR_GOOD = {133: "client id not valid", 134: "bad user name or password", 135: "not authorized"}
GOODBYE_TIMEOUT_S = 2.0  # how long close() waits for "offline" to reach the broker
# QoS 1/2 messages handed to paho and not yet acknowledged by the broker: past this, paho refuses more
# (`publish` returns False) and they wait, bounded, in the Outbox instead.
PAHO_QUEUE = 100


@dataclass(frozen=True)
class Message:
    """One MQTT message to publish: the topic, the payload and its kind's QoS and retain flag."""

    topic: str
    payload: bytes
    qos: int
    retain: bool


class Outbox:
    """At most `capacity` messages waiting for the broker, oldest first; a full outbox drops its oldest.

    The oldest goes because a home automation wants what happens now more than
    what happened during an outage; each drop is counted (stats `dropped.queue_full`).
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.messages: deque[Message] = deque()
        self.dropped = 0

    def put(self, message: Message) -> None:
        if len(self.messages) >= self.capacity:
            self.messages.popleft()
            self.dropped += 1
        self.messages.append(message)

    def __len__(self) -> int:
        return len(self.messages)


def credentials(settings: MqttSettings) -> tuple[str | None, str | None]:
    """(user, password) from the config, else from $TEXTWATCH_MQTT_USERNAME / $TEXTWATCH_MQTT_PASSWORD; None = unset."""
    user = settings.username or os.environ.get(USERNAME_ENV, "")
    password = settings.password.get_secret_value() or os.environ.get(PASSWORD_ENV, "")
    if password and not user:
        raise ConfigError(f"mqtt: a password is set but no user (mqtt.username or ${USERNAME_ENV})")
    return user or None, password or None


def client_id(settings: MqttSettings) -> str:
    return settings.client_id or f"textwatch-{settings.topic_prefix.replace('/', '-')}-{socket.gethostname()}"[:128]


def availability_topic(settings: MqttSettings) -> str:
    return f"{settings.topic_prefix}/availability"


def broker_name(settings: MqttSettings) -> str:
    """host:port for messages (never with credentials)."""
    return f"{settings.host}:{settings.port}"


def tls_context(settings: MqttSettings) -> ssl.SSLContext:
    """A client TLS context that verifies the broker's certificate and host name; ConfigError for unusable files."""
    for key in ("ca_file", "cert_file", "key_file"):
        path = getattr(settings, key)
        if path is not None and not path.is_file():
            raise ConfigError(f"mqtt.{key} {path}: no such file")
    try:
        context = ssl.create_default_context(cafile=str(settings.ca_file) if settings.ca_file else None)
        if settings.cert_file is not None:
            context.load_cert_chain(str(settings.cert_file), str(settings.key_file))
    except (ssl.SSLError, OSError) as err:
        raise ConfigError(f"mqtt TLS files (ca_file, cert_file, key_file) unusable: {describe_error(err)}") from None
    return context


def describe_error(err: BaseException) -> str:
    """One line for a connection error: ssl's reason ("certificate verify failed: ..."), or the OS's."""
    if isinstance(err, ssl.SSLCertVerificationError):
        return f"TLS: certificate verify failed: {err.verify_message or err.reason} " \
               "(is mqtt.ca_file the CA that signed the broker's certificate, for this host name?)"
    if isinstance(err, ssl.SSLError):
        return f"TLS: {err.reason or err}"
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    return str(err) or type(err).__name__


class _Client(paho.Client):
    """paho's client, remembering why the last connection attempt failed (paho's loop swallows it)."""

    last_error: str = ""

    def reconnect(self) -> MQTTErrorCode:
        try:
            return super().reconnect()
        except OSError as err:
            self.last_error = describe_error(err)
            raise


class MqttLink:
    """The broker connection: built (and its TLS files checked) at once, connected in the background by `start`."""

    def __init__(self, settings: MqttSettings) -> None:
        self.settings = settings
        self.log = get_logger()
        self.availability = availability_topic(settings)
        self.lock = threading.Lock()
        self.connects = 0  # CONNACKs that accepted us
        self.disconnects = 0
        self.connected = False
        self.fatal: str | None = None  # why the broker refused us for good
        self.incoming: deque[tuple[str, bytes]] = deque(maxlen=100)  # messages on our subscriptions
        self.subscriptions: list[str] = []
        self.client = self._build()

    def _build(self) -> _Client:
        s = self.settings
        client = _Client(CallbackAPIVersion.VERSION2, client_id=client_id(s), protocol=paho.MQTTv311, clean_session=True)
        user, password = credentials(s)
        if user is not None:
            client.username_pw_set(user, password)
        if s.tls:
            client.tls_set_context(tls_context(s))
        client.will_set(self.availability, OFFLINE, qos=s.qos_availability, retain=True)
        client.reconnect_delay_set(s.reconnect_min_s, s.reconnect_max_s)
        client.max_queued_messages_set(PAHO_QUEUE)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    def start(self, subscriptions: list[str]) -> None:
        """Connect in the background (paho's thread); an absent broker is retried with backoff, never waited for."""
        self.subscriptions = subscriptions
        self.client.connect_async(self.settings.host, self.settings.port, keepalive=self.settings.keepalive_s)
        self.client.loop_start()
        self.log.info("mqtt_connecting", broker=broker_name(self.settings), tls=self.settings.tls,
                      client_id=client_id(self.settings))

    # ------------------------------------------------------------ paho's thread

    def _on_connect(self, client: paho.Client, _userdata: Any, _flags: Any, reason: Any, _properties: Any) -> None:
        if reason.is_failure:
            why = REFUSED_FOR_GOOD.get(reason.value)
            if why is not None:
                self.fatal = f"mqtt broker {broker_name(self.settings)} refused the connection: {why} " \
                             f"(mqtt.username / mqtt.password or ${USERNAME_ENV} / ${PASSWORD_ENV})"
                client.disconnect()
            else:
                self.log.warning("mqtt_connect_refused", broker=broker_name(self.settings), reason=str(reason))
            return
        for topic in self.subscriptions:
            client.subscribe(topic, qos=1)
        with self.lock:
            self.connects += 1
            self.connected = True
        self.log.info("mqtt_connected", broker=broker_name(self.settings), connects=self.connects)

    def _on_connect_fail(self, client: paho.Client, _userdata: Any) -> None:
        self.log.warning("mqtt_connect_failed", broker=broker_name(self.settings),
                         error=getattr(client, "last_error", "") or "unknown", retry="with backoff")

    def _on_disconnect(self, _client: paho.Client, _userdata: Any, _flags: Any, reason: Any, _properties: Any) -> None:
        with self.lock:
            was = self.connected
            self.connected = False
            if was:
                self.disconnects += 1
        if was:
            self.log.warning("mqtt_disconnected", broker=broker_name(self.settings), reason=str(reason))

    def _on_message(self, _client: paho.Client, _userdata: Any, message: paho.MQTTMessage) -> None:
        self.incoming.append((message.topic, bytes(message.payload)))

    # ------------------------------------------------------------ the bridge's thread

    def is_connected(self) -> bool:
        with self.lock:
            return self.connected

    def publish(self, message: Message) -> bool:
        """Hand `message` to paho without waiting; False when not connected or paho's queue is full (keep it)."""
        if not self.is_connected():
            return False
        info = self.client.publish(message.topic, message.payload, qos=message.qos, retain=message.retain)
        if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
            return True
        if info.rc in (MQTTErrorCode.MQTT_ERR_NO_CONN, MQTTErrorCode.MQTT_ERR_QUEUE_SIZE):
            return False
        raise OSError(f"mqtt publish to {message.topic}: {paho.error_string(info.rc)}")

    def take_incoming(self) -> list[tuple[str, bytes]]:
        messages = []
        while self.incoming:
            messages.append(self.incoming.popleft())
        return messages

    def close(self) -> None:
        """Say "offline" (retained) when connected, then disconnect and stop paho's thread."""
        try:
            if self.is_connected():
                info = self.client.publish(self.availability, OFFLINE, qos=self.settings.qos_availability, retain=True)
                if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS and self.settings.qos_availability > 0:
                    info.wait_for_publish(GOODBYE_TIMEOUT_S)
            self.client.disconnect()
        finally:
            self.client.loop_stop()
