"""Home Assistant MQTT discovery: the retained config messages that make textwatch's entities appear.

Home Assistant's MQTT integration subscribes to `<discovery_prefix>/#` (default
"homeassistant") and creates an entity for each retained config message on
`<discovery_prefix>/<component>/<node_id>/<object_id>/config`. Per camera:

    sensor         <camera>_text          the camera's latest text (state: `text`, attributes: the whole state)
    binary_sensor  <camera>_online        the camera's source delivers frames (device_class connectivity)
    binary_sensor  <camera>_known_<hash>  one per filters.known string: on screen now (on) or not (off)

All read the camera's retained `<topic_prefix>/<camera>/state` through a value
template, and all are unavailable while `<topic_prefix>/availability` says
"offline" (the bridge's last will). Each camera is one device; unique ids are
`<node_id>_<object_id>`, where node_id is the topic prefix with "/" as "_", so
two daemons with different prefixes never collide. A watched string's id comes
from a hash of the string, not its position, so reordering `known` keeps the
entity (its value template, which indexes the state's `known` list, is sent again).

A watched string is a binary sensor rather than a sensor holding "seen"/"not seen":
that is Home Assistant's entity for a two-state fact, and automations trigger on it directly.

The formats are Home Assistant's (https://www.home-assistant.io/integrations/mqtt/#mqtt-discovery),
not textwatch's bus protocol, so they are built here rather than in wire.py.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from textwatch import __version__
from textwatch.config import CameraSettings, MqttSettings

STATE_MAX = 255  # Home Assistant refuses a sensor state longer than this


def node_id(settings: MqttSettings) -> str:
    return settings.topic_prefix.replace("/", "_")


def state_topic(settings: MqttSettings, camera: str) -> str:
    return f"{settings.topic_prefix}/{camera}/state"


def known_object_id(camera: str, text: str) -> str:
    return f"{camera}_known_{hashlib.sha256(text.encode()).hexdigest()[:10]}"


def discovery_messages(settings: MqttSettings, cameras: list[CameraSettings]) -> list[tuple[str, bytes]]:
    """(topic, JSON payload) of every discovery config, to publish retained."""
    messages = []
    for camera in cameras:
        for component, object_id, config in camera_entities(settings, camera):
            topic = f"{settings.discovery_prefix}/{component}/{node_id(settings)}/{object_id}/config"
            messages.append((topic, json.dumps(config, ensure_ascii=False, separators=(",", ":")).encode()))
    return messages


def camera_entities(settings: MqttSettings, camera: CameraSettings) -> list[tuple[str, str, dict[str, Any]]]:
    """(component, object_id, config) of one camera's entities."""
    entities = [
        ("sensor", f"{camera.id}_text", {
            "name": "Text", "icon": "mdi:text-recognition",
            "value_template": f"{{{{ value_json.text[:{STATE_MAX}] }}}}",
            "json_attributes_topic": state_topic(settings, camera.id),
        }),
        ("binary_sensor", f"{camera.id}_online", {
            "name": "Online", "device_class": "connectivity", "entity_category": "diagnostic",
            "value_template": "{{ 'ON' if value_json.status == 'online' else 'OFF' }}",
            "payload_on": "ON", "payload_off": "OFF",
        }),
    ]
    for index, text in enumerate(dict.fromkeys(camera.filters.known)):
        entities.append(("binary_sensor", known_object_id(camera.id, text), {
            "name": f"Seen {text}", "icon": "mdi:eye",
            "value_template": f"{{{{ 'ON' if value_json.known[{index}].seen else 'OFF' }}}}",
            "payload_on": "ON", "payload_off": "OFF",
            "json_attributes_topic": state_topic(settings, camera.id),
            "json_attributes_template": f"{{{{ value_json.known[{index}] | tojson }}}}",
        }))
    return [(component, object_id, _common(settings, camera, object_id) | config)
            for component, object_id, config in entities]


def _common(settings: MqttSettings, camera: CameraSettings, object_id: str) -> dict[str, Any]:
    """What every entity carries: its unique id, where its state is, availability, device and origin."""
    node = node_id(settings)
    return {
        "unique_id": f"{node}_{object_id}",
        "object_id": f"{node}_{object_id}",
        "state_topic": state_topic(settings, camera.id),
        "qos": settings.qos_state,
        "availability": [{"topic": f"{settings.topic_prefix}/availability"}],
        "payload_available": "online",
        "payload_not_available": "offline",
        "device": {
            "identifiers": [f"{node}_{camera.id}"],
            "name": f"textwatch {camera.id}",
            "manufacturer": "textwatch",
            "model": "OCR camera",
            "sw_version": __version__,
        },
        "origin": {"name": "textwatch", "sw_version": __version__},
    }
