"""The MQTT bridge in a whole daemon on the bundled sample, against a real Mosquitto.

One daemon run (module fixture) serves every test here, in file order: text and
state reach the broker, the discovery configs are what Home Assistant needs,
the broker is killed and restarted mid-run, the bridge itself is killed. Tests
read the broker with a real paho client and the daemon's bus with a real SUB.
"""

from __future__ import annotations

import json
import os
import signal
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from support.daemon import Daemon, daemon_config
from support.mqtt import Broker, Watcher, mqtt_section
from support.ports import free_port
from support.wait import wait_until
from textwatch.config import PROJECT_ROOT

pytestmark = pytest.mark.slow
SAMPLE = PROJECT_ROOT / "daemon" / "textwatch" / "data" / "sample.mp4"
KNOWN = ["Sample Text", "NOT IN THE CLIP 7"]  # the first is on screen all the time, the second never
AVAILABILITY, STATE, TEXT = "textwatch/availability", "textwatch/cam1/state", "textwatch/cam1/text"


class Run:
    """The shared run: the broker, the daemon, a watcher on the broker and a subscriber on the bus."""

    def __init__(self, folder: Path) -> None:
        self.broker = Broker(folder / "broker").start()
        self.metrics_port = free_port()
        config = daemon_config(folder, str(SAMPLE), shipped_detector=True, loop=True, max_fps=2.0,
                               metrics_port=self.metrics_port, extra=mqtt_section(self.broker.port, queue=2))
        with config.open("a") as file:  # the camera's known strings: Home Assistant gets a sensor for each
            file.write(f"\n[cameras.filters]\nknown = {json.dumps(KNOWN)}\n")
        self.watcher = Watcher(self.broker.port)
        self.daemon = Daemon(config)
        self.bus = self.daemon.subscriber("track.", timeout=60, rcvhwm=100_000)

    def bridge_stats(self, since: int = 0) -> list[dict[str, Any]]:
        self.bus.drain(quiet_s=0.05)
        return [b for t, b in self.bus.seen[since:] if t == "stats" and b.get("role") == "mqtt"]

    def close(self) -> None:
        self.bus.close()
        self.daemon.stop()
        self.watcher.close()
        self.broker.kill()


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory):
    from support.models import needs_shipped_model

    needs_shipped_model()
    shared = Run(tmp_path_factory.mktemp("mqtt"))
    yield shared
    shared.close()


def test_the_sample_publishes_text_and_state_to_the_broker(run: Run) -> None:
    new = run.watcher.wait_for(lambda m: m.topic == TEXT and m.json()["event"] == "new", 90, what="a new track text")
    body = new.json()
    assert body["text"] and body["camera"] == "cam1" and len(body["box"]) == 4
    assert body["first_seen"] <= body["last_seen"] and 0 <= body["confidence"] <= 100

    def sample_text_seen(message) -> bool:
        state = message.json() if message.topic == STATE else None
        return bool(state and state["status"] == "online" and state["known"][0]["seen"])

    state = run.watcher.wait_for(sample_text_seen, 90, what=f"a state with {KNOWN[0]!r} seen").json()
    assert [k["text"] for k in state["known"]] == KNOWN and state["known"][1]["seen"] is False
    assert state["text"] and state["tracks"] and all(t["text"] for t in state["tracks"])
    run.watcher.wait_for(lambda m: m.topic == AVAILABILITY and m.text == "online", 10, what="availability online")
    with Watcher(run.broker.port, topics=(STATE, AVAILABILITY)) as late:  # a client that joins now gets it at once
        late.wait_for(lambda m: m.topic == STATE and m.retain, 10, what="the retained state")
        late.wait_for(lambda m: m.topic == AVAILABILITY and m.retain and m.text == "online", 10)


def test_discovery_configs_are_valid_json_with_what_home_assistant_requires(run: Run) -> None:
    with Watcher(run.broker.port, topics=("homeassistant/#",)) as late:
        wait_until(lambda: len(late.messages()) >= 2 + len(KNOWN), 20, message="the retained discovery configs")
        configs = {m.topic: json.loads(m.payload) for m in late.messages()}
        assert all(m.retain for m in late.messages())
    assert set(configs) == {
        "homeassistant/sensor/textwatch/cam1_text/config",
        "homeassistant/binary_sensor/textwatch/cam1_online/config",
        *(f"homeassistant/binary_sensor/textwatch/{c['unique_id'][len('textwatch_'):]}/config"
          for c in configs.values() if "_known_" in c["unique_id"]),
    }
    assert len([c for c in configs.values() if "_known_" in c["unique_id"]]) == len(KNOWN)
    for config in configs.values():
        for key in ("name", "unique_id", "state_topic", "value_template", "availability", "device"):
            assert config[key], key
        assert config["state_topic"] == STATE and config["availability"] == [{"topic": AVAILABILITY}]
        assert config["device"]["identifiers"] == ["textwatch_cam1"]
    assert len({c["unique_id"] for c in configs.values()}) == len(configs)


def test_a_broker_killed_and_restarted_mid_run_costs_counted_drops_and_never_blocks_the_pipeline(run: Run) -> None:
    since = len(run.bus.seen)
    run.broker.kill()
    wait_until(lambda: any(not s["connected"] for s in run.bridge_stats(since)), 30, message="the bridge never saw the broker go")
    frames_then = detect_frames(run, since)
    wait_until(lambda: any(s["dropped"].get("queue_full", 0) > 0 for s in run.bridge_stats(since)), 60,
               message="no drop counted while the broker was away")
    # The pipeline went on: detect read frames and tracks were published on the bus meanwhile.
    assert detect_frames(run, since) > frames_then
    assert any(t.startswith("track.") for t, _ in run.bus.seen[since:])

    mark = run.watcher.mark()
    run.broker.start()
    run.watcher.wait_for(lambda m: m.topic == AVAILABILITY and m.text == "online", 30, since=mark,
                         what="availability online after the restart")
    run.watcher.wait_for(lambda m: m.topic.startswith("homeassistant/"), 10, since=mark, what="discovery again")
    run.watcher.wait_for(lambda m: m.topic == STATE, 10, since=mark, what="the state again")
    latest = wait_until(lambda: [s for s in run.bridge_stats(since) if s["connected"] and s["connects"] >= 2], 30)[-1]
    assert latest["disconnects"] >= 1 and latest["dropped"]["queue_full"] > 0
    with urllib.request.urlopen(f"http://127.0.0.1:{run.metrics_port}/metrics", timeout=10) as page:
        metrics = page.read().decode()
    assert 'textwatch_mqtt_dropped_total{process="mqtt",reason="queue_full"}' in metrics
    assert 'textwatch_mqtt_connected{process="mqtt"} 1.0' in metrics


def test_a_killed_bridge_reads_offline_by_its_last_will_then_online_again(run: Run) -> None:
    mark = run.watcher.mark()
    [pid] = run.daemon.child_pids("mqtt")
    os.kill(pid, signal.SIGKILL)
    offline = run.watcher.wait_for(lambda m: m.topic == AVAILABILITY and m.text == "offline", 30, since=mark,
                                   what="the last will")
    run.watcher.wait_for(lambda m: m.topic == AVAILABILITY and m.text == "online" and m.at > offline.at, 60,
                         since=mark, what="online from the restarted bridge")
    assert len(run.daemon.child_pids("mqtt")) == 2


def test_a_stopped_daemon_leaves_availability_offline(run: Run) -> None:
    mark = run.watcher.mark()
    assert run.daemon.terminate(timeout=30) == 0
    last = run.watcher.wait_for(lambda m: m.topic == AVAILABILITY, 10, since=mark, what="a goodbye")
    assert last.text == "offline"
    assert "mqtt_bridge_stopped" in run.daemon.log_text()


def detect_frames(run: Run, since: int) -> int:
    run.bus.drain(quiet_s=0.05)
    frames = [b["frames"] for t, b in run.bus.seen[since:] if t == "stats" and b.get("role") == "detect"]
    return frames[-1] if frames else 0
