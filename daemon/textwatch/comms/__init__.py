"""textwatch talking to systems outside its ZeroMQ bus (Frigate's `comms/`): the MQTT bridge's parts.

    mqtt.py           the broker connection (paho-mqtt on its own network thread) and the bounded outbox
    state.py          bus messages (track.*, event.*, stats) -> MQTT text events and per-camera state
    homeassistant.py  Home Assistant MQTT discovery configs

The process that owns them is processes/mqtt.py; nothing here makes a ZeroMQ socket.
"""
