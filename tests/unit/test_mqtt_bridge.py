"""The MQTT bridge's pure parts: bus events to text events and state, the outbox, discovery, config, stats."""

from __future__ import annotations

import json
import re

import pytest

from textwatch import wire
from textwatch.comms.homeassistant import discovery_messages
from textwatch.comms.mqtt import Message, Outbox, credentials
from textwatch.comms.state import CameraBook
from textwatch.config import Settings
from textwatch.errors import ConfigError
from textwatch.processes.supervisor import child_specs


def settings(known: list[str] | None = None, **mqtt: object) -> Settings:
    return Settings.model_validate({
        "cameras": [{"id": "gate", "filters": {"known": known or []}}, {"id": "door"}],
        "mqtt": {"enabled": True, **mqtt},
    })


def track(event: str, text: str = "", track_id: int = 1, ts: float = 100.0, reason: str = "") -> wire.TrackEvent:
    return wire.TrackEvent(camera="gate", track=track_id, event=event, ts=ts, box=(1, 2, 3, 4), text=text,
                           confidence=90.0, reads=1, first_seq=0, first_ts=99.0, last_seq=3, last_ts=ts, reason=reason)


def test_a_track_gives_new_updated_and_ended_texts_once_it_has_text() -> None:
    book = CameraBook(settings())
    assert book.take_track(track("appeared")) == []  # no text yet: nothing to say
    assert [t.event for t in book.take_track(track("changed", "AB 123"))] == ["new"]
    assert book.take_track(track("changed", "AB 123")) == []  # same text: no message
    assert [(t.event, t.text) for t in book.take_track(track("changed", "AB 128"))] == [("updated", "AB 128")]
    [ended] = book.take_track(track("gone", "AB 128", reason="missed"))
    assert (ended.event, ended.text, ended.reason, ended.box) == ("ended", "AB 128", "missed", (1, 2, 3, 4))
    assert book.take_track(track("gone", "", track_id=2)) == []  # a track that never had a text ends silently


def test_state_keeps_the_latest_text_and_says_which_known_strings_are_on_screen() -> None:
    book = CameraBook(settings(known=["AB 123", "XY 999"]))
    book.take_dirty()
    book.take_track(track("changed", "AB 123", ts=200.0))
    [state] = book.take_dirty()
    assert (state.camera, state.text, state.text_ts) == ("gate", "AB 123", 200.0)
    assert [(k.text, k.seen, k.last_seen) for k in state.known] == [("AB 123", True, 200.0), ("XY 999", False, None)]
    assert [t.track for t in state.tracks] == [1]
    book.take_track(track("gone", "AB 123", ts=201.0))
    [state] = book.take_dirty()
    assert state.text == "AB 123" and state.tracks == []  # the sensor keeps the last text after the track ended
    assert state.known[0].seen is False and state.known[0].last_seen == 200.0
    assert book.take_dirty() == []  # nothing changed since


def test_camera_status_comes_from_source_events_and_detect_stats() -> None:
    book = CameraBook(settings())
    assert {s.camera: s.status for s in book.take_dirty()} == {"door": "unknown", "gate": "unknown"}
    book.take_source(wire.SourceEvent("gate", "source_down", "rtsp://***@cam", "no frame for 5 s", 10.0))
    camera = wire.CameraStats(1, 0, 1, 0, 0, 0, True, 0)
    book.take_detect_stats(wire.DetectStats("detect-0", 11.0, 1, 1, 1.0, 1.0, 0, {}, {"door": camera}, {}, {}))
    assert {s.camera: s.status for s in book.take_dirty()} == {"door": "online", "gate": "offline"}


def test_a_camera_outside_the_config_is_refused() -> None:
    with pytest.raises(ValueError, match="not in the config"):
        CameraBook(settings()).take_track(wire.TrackEvent(**{**track("changed", "X").__dict__, "camera": "other"}))


def test_a_full_outbox_drops_its_oldest_message_and_counts_it() -> None:
    outbox = Outbox(2)
    for index in range(5):
        outbox.put(Message(f"t/{index}", b"", 1, False))
    assert [m.topic for m in outbox.messages] == ["t/3", "t/4"] and outbox.dropped == 3


def test_discovery_configs_carry_what_home_assistant_requires() -> None:
    s = settings(known=["AB 123", "XY 999"], topic_prefix="site/one")
    messages = discovery_messages(s.mqtt, s.cameras)
    assert len(messages) == 2 * 2 + 2  # text and online per camera, one per known string
    ids = set()
    for topic, payload in messages:
        assert re.fullmatch(r"homeassistant/(sensor|binary_sensor)/site_one/[A-Za-z0-9_-]+/config", topic), topic
        config = json.loads(payload)
        assert config["state_topic"].startswith("site/one/") and config["state_topic"].endswith("/state")
        assert config["availability"] == [{"topic": "site/one/availability"}]
        assert config["device"]["identifiers"] and config["device"]["name"] and config["name"]
        assert "{{" in config["value_template"]
        ids.add(config["unique_id"])
    assert len(ids) == len(messages)


def test_mqtt_config_errors_are_one_clear_line(write_config) -> None:
    from textwatch.config import load_settings

    cases = {
        'host = "mqtt://broker"': "not a URL",
        'tls = false\nca_file = "ca.crt"': "need mqtt.tls",
        'tls = true\ncert_file = "c.crt"': "cert_file and mqtt.key_file go together",
        'topic_prefix = "a/#"': "topic_prefix",
        'port = 70000': "mqtt.port",
        'qos_text = 3': "mqtt.qos_text",
        'reconnect_min_s = 10\nreconnect_max_s = 2': "reconnect_max_s is below",
    }
    for body, expected in cases.items():
        with pytest.raises(ConfigError, match=re.escape(expected)):
            load_settings(write_config(f"[mqtt]\n{body}\n"))
    with pytest.raises(ConfigError, match="mqtt.enabled needs tracking.enabled"):
        load_settings(write_config("[mqtt]\nenabled = true\n[tracking]\nenabled = false\n"))


def test_credentials_come_from_the_config_else_the_environment(monkeypatch) -> None:
    monkeypatch.delenv("TEXTWATCH_MQTT_USERNAME", raising=False)
    monkeypatch.delenv("TEXTWATCH_MQTT_PASSWORD", raising=False)
    assert credentials(settings().mqtt) == (None, None)
    monkeypatch.setenv("TEXTWATCH_MQTT_USERNAME", "ha")
    monkeypatch.setenv("TEXTWATCH_MQTT_PASSWORD", "s3cret")
    assert credentials(settings().mqtt) == ("ha", "s3cret")
    assert credentials(settings(username="cfg", password="pw").mqtt) == ("cfg", "pw")
    monkeypatch.delenv("TEXTWATCH_MQTT_USERNAME")
    with pytest.raises(ConfigError, match="no user"):
        credentials(settings().mqtt)


def test_the_password_is_not_in_the_settings_repr() -> None:
    assert "s3cret" not in repr(settings(username="u", password="s3cret"))


def test_bridge_stats_round_trip_and_reach_the_metrics() -> None:
    from textwatch.metrics import Exporter

    stats = wire.MqttStats(process="mqtt", ts=5.0, received=10, rejected=0, published=7, dropped={"queue_full": 3},
                           queued=2, connects=2, disconnects=1, connected=True, started=1.0)
    _, body = wire.decode_published(wire.encode_published(wire.TOPIC_STATS, stats))
    assert wire.stats_from_dict(body) == stats
    with pytest.raises(wire.WireError):
        wire.stats_from_dict({**body, "dropped": {"queue_full": -1}})
    exporter = Exporter(settings(), now=0.0)
    exporter.observe_stats(stats, now=5.0)
    value = exporter.registry.get_sample_value
    assert value("textwatch_mqtt_dropped_total", {"process": "mqtt", "reason": "queue_full"}) == 3
    assert value("textwatch_mqtt_connected", {"process": "mqtt"}) == 1


def test_the_supervisor_starts_the_bridge_only_when_enabled() -> None:
    assert "mqtt" in [spec.name for spec in child_specs(settings(enabled=True))]
    assert "mqtt" not in [spec.name for spec in child_specs(settings(enabled=False))]
