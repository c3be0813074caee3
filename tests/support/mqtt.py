"""A real Mosquitto broker on a free loopback port, a test CA made at test time, and a paho client that watches.

`Broker` writes a mosquitto.conf into its folder and runs `mosquitto -c` (the
Debian package `mosquitto`, installed by `make deps`), optionally with a
password file (`mosquitto_passwd -b`) and a TLS listener whose certificate is
signed by a `TestCa` (the `openssl` command, nothing committed). It can be
killed (SIGKILL, as a crash) and started again on the same port.
`Watcher` is a real MQTT client (paho) subscribed to `#` that keeps every
message it receives; every wait has a deadline.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from support.ports import HOST, free_port
from support.wait import wait_until


def mosquitto_exe() -> str:
    """The broker program (Debian installs it in /usr/sbin, outside a normal user's PATH)."""
    found = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        pytest.fail("mosquitto is not installed: run `make deps` (Debian package mosquitto)")
    return found


def port_open(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


class TestCa:
    """A throwaway CA and what it signs (EC P-256 keys, valid one day), made with the openssl command."""

    __test__ = False  # not a pytest class

    def __init__(self, folder: Path, name: str = "ca") -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.key, self.cert = folder / f"{name}.key", folder / f"{name}.crt"
        self._openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                      "-keyout", str(self.key), "-out", str(self.cert), "-days", "1", "-subj", f"/CN=textwatch test {name}",
                      "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")

    def issue(self, name: str, san: str = "IP:127.0.0.1,DNS:localhost") -> tuple[Path, Path]:
        """(certificate, key) for `name`, signed by this CA, valid for `san`."""
        key, csr, cert = (self.folder / f"{name}{ext}" for ext in (".key", ".csr", ".crt"))
        ext = self.folder / f"{name}.ext"
        ext.write_text(f"subjectAltName={san}\nbasicConstraints=CA:FALSE\n")
        self._openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                      "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}")
        self._openssl("x509", "-req", "-in", str(csr), "-CA", str(self.cert), "-CAkey", str(self.key),
                      "-CAcreateserial", "-out", str(cert), "-days", "1", "-extfile", str(ext))
        return cert, key

    @staticmethod
    def _openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=30)


@dataclass
class Broker:
    """Mosquitto on `port` (plain, or TLS with `tls=(ca, cert, key)` and client certificates required),
    plus a plain `plain_port` when TLS is on."""

    folder: Path
    users: dict[str, str] | None = None  # user -> password; None = anonymous clients allowed
    tls: tuple[Path, Path, Path] | None = None

    def __post_init__(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.plain_port = free_port() if self.tls else self.port
        self.process: subprocess.Popen[bytes] | None = None
        self.log = self.folder / "mosquitto.log"
        self.config = self.folder / "mosquitto.conf"
        self.config.write_text(self._config())

    def _config(self) -> str:
        lines = ["per_listener_settings false", "persistence false", "user root",
                 f"log_dest file {self.log}", "log_type error", "log_type warning", "log_type notice"]
        if self.users is None:
            lines.append("allow_anonymous true")
        else:
            passwords = self.folder / "passwords"
            for index, (user, password) in enumerate(self.users.items()):
                create = ["-c"] if index == 0 else []
                subprocess.run(["mosquitto_passwd", *create, "-b", str(passwords), user, password],
                               check=True, capture_output=True, timeout=30)
            passwords.chmod(0o600)
            lines += ["allow_anonymous false", f"password_file {passwords}"]
        lines.append(f"listener {self.port} {HOST}")
        if self.tls is not None:
            ca, cert, key = self.tls
            lines += [f"cafile {ca}", f"certfile {cert}", f"keyfile {key}", "require_certificate true",
                      f"listener {self.plain_port} {HOST}"]
        return "\n".join(lines) + "\n"

    def start(self) -> Broker:
        self.process = subprocess.Popen([mosquitto_exe(), "-c", str(self.config)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        wait_until(lambda: self.process.poll() is not None or (port_open(self.port) and port_open(self.plain_port)),
                   timeout=10, message=lambda: f"mosquitto did not listen; its log: {self.log_text()}")
        if self.process.poll() is not None:
            pytest.fail(f"mosquitto exited {self.process.returncode}; its log: {self.log_text()}")
        return self

    def kill(self) -> None:
        """SIGKILL, as a crash: no goodbye to the clients."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else "(no log)"

    def __enter__(self) -> Broker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retain: bool
    at: float  # monotonic

    def json(self) -> Any:
        return json.loads(self.payload)

    @property
    def text(self) -> str:
        return self.payload.decode()


class Watcher:
    """A paho client on the broker's plain port, subscribed to `topics`, keeping every message; reconnects by itself."""

    def __init__(self, port: int, topics: tuple[str, ...] = ("#",), user: str | None = None,
                 password: str | None = None) -> None:
        self.seen: list[Received] = []
        self.lock = threading.Lock()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"test-{uuid.uuid4().hex[:8]}")
        if user is not None:
            self.client.username_pw_set(user, password)
        self.client.on_connect = lambda client, *_: [client.subscribe(t, qos=1) for t in topics]
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(1, 1)
        self.client.connect_async(HOST, port, keepalive=10)
        self.client.loop_start()

    def _on_message(self, _client: Any, _userdata: Any, message: paho.MQTTMessage) -> None:
        with self.lock:
            self.seen.append(Received(message.topic, bytes(message.payload), bool(message.retain), time.monotonic()))

    def messages(self, topic: str | None = None, since: int = 0) -> list[Received]:
        with self.lock:
            return [m for m in self.seen[since:] if topic is None or m.topic == topic]

    def mark(self) -> int:
        """Where the messages received from now on start (for `since`)."""
        with self.lock:
            return len(self.seen)

    def wait_for(self, predicate: Callable[[Received], bool], timeout: float, since: int = 0,
                 what: str = "a matching MQTT message") -> Received:
        def found() -> Received | None:
            return next((m for m in self.messages(since=since) if predicate(m)), None)

        return wait_until(found, timeout, 0.05, lambda: f"{what}; saw topics {sorted({m.topic for m in self.messages()})}")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> Watcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def mqtt_section(port: int, **keys: object) -> str:
    """A `[mqtt]` table for a config (bridge enabled, this broker on loopback, test-fast reconnects)."""
    values: dict[str, object] = {"enabled": True, "host": HOST, "port": port, "reconnect_min_s": 1,
                                 "reconnect_max_s": 2, **keys}
    lines = [f"{key} = {json.dumps(value) if not isinstance(value, Path) else json.dumps(str(value))}"
             for key, value in values.items()]
    return "\n[mqtt]\n" + "\n".join(lines) + "\n"
