"""`textwatch mqtt` alone against a real Mosquitto: credentials, TLS with a test CA, `textwatch check`.

No daemon runs here: the bridge's bus is silent, so after mqtt.bus_silence_s it
says "offline" on its availability topic (what a dead remote daemon looks like),
and its discovery configs show that it connected.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path


from support.cli import run_cli, textwatch_exe
from support.mqtt import Broker, TestCa, Watcher, mqtt_section
from support.wait import wait_until

AVAILABILITY = "textwatch/availability"


def bridge_config(folder: Path, port: int, **mqtt: object) -> Path:
    """The default camera, a private runtime folder, and an [mqtt] section for this broker."""
    config = folder / "bridge.toml"
    config.write_text(f'[bus]\nruntime_dir = "{folder / "run"}"\n' + mqtt_section(port, bus_silence_s=1.0, **mqtt))
    return config


class Bridge:
    """`textwatch mqtt -c CONFIG` in a subprocess, its output in a file."""

    def __init__(self, config: Path, env: dict[str, str] | None = None) -> None:
        self.log = config.with_suffix(".log")
        self.handle = self.log.open("w")
        self.process = subprocess.Popen([str(textwatch_exe()), "mqtt", "-c", str(config)], stdout=self.handle,
                                        stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=20)
        finally:
            self.handle.close()

    def __enter__(self) -> Bridge:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.stop()


def test_wrong_credentials_are_refused_with_a_clear_error_and_right_ones_connect(tmp_path: Path) -> None:
    with Broker(tmp_path / "broker", users={"textwatch": "right-pass-41"}) as broker:
        refused = run_cli("mqtt", "-c", str(bridge_config(tmp_path, broker.port, username="textwatch",
                                                          password="wrong-pass-97")), timeout=60)
        assert refused.returncode == 78, refused.stderr
        output = refused.stdout + refused.stderr
        assert "refused the connection" in output and ("bad user name or password" in output or "not authorized" in output)
        assert "wrong-pass-97" not in output

        config = bridge_config(tmp_path, broker.port)  # the credentials from the environment this time
        env = {"TEXTWATCH_MQTT_USERNAME": "textwatch", "TEXTWATCH_MQTT_PASSWORD": "right-pass-41"}
        with Watcher(broker.port, user="textwatch", password="right-pass-41") as watcher, Bridge(config, env) as bridge:
            watcher.wait_for(lambda m: m.topic.startswith("homeassistant/sensor/"), 30, what="discovery from the bridge")
            watcher.wait_for(lambda m: m.topic == AVAILABILITY and m.text == "offline", 30, what="offline: no daemon heard")
            assert bridge.stop() == 0
        assert "right-pass-41" not in bridge.text()


def test_tls_to_the_broker_with_a_test_ca_and_a_client_certificate(tmp_path: Path) -> None:
    ca = TestCa(tmp_path / "pki")
    server_cert, server_key = ca.issue("broker")
    client_cert, client_key = ca.issue("textwatch")
    stranger = TestCa(tmp_path / "other", name="stranger")
    with Broker(tmp_path / "broker", tls=(ca.cert, server_cert, server_key)) as broker:
        config = bridge_config(tmp_path, broker.port, tls=True, ca_file=ca.cert, cert_file=client_cert,
                               key_file=client_key)
        with Watcher(broker.plain_port) as watcher, Bridge(config) as bridge:
            watcher.wait_for(lambda m: m.topic.startswith("homeassistant/"), 30, what="discovery over TLS")
            assert bridge.stop() == 0
            assert "mqtt_connected" in bridge.text()

        untrusted = bridge_config(tmp_path, broker.port, tls=True, ca_file=stranger.cert)
        with Bridge(untrusted) as bridge:
            wait_until(lambda: "certificate verify failed" in bridge.text(), 30,
                       message=lambda: f"no clear TLS error; the bridge said: {bridge.text()[-2000:]}")
            assert bridge.process.poll() is None, "an untrusted broker is retried, not a crash"
            assert bridge.stop() == 0


def test_check_reports_unusable_mqtt_settings_in_one_line(tmp_path: Path) -> None:
    config = bridge_config(tmp_path, 1883, tls=True, ca_file=tmp_path / "missing-ca.crt")
    result = run_cli("check", "-c", str(config))
    assert result.returncode == 78
    lines = [line for line in result.stderr.splitlines() if "mqtt" in line]
    assert lines == [f"textwatch check: mqtt.ca_file {tmp_path / 'missing-ca.crt'}: no such file"], result.stderr
    assert "Traceback" not in result.stderr
