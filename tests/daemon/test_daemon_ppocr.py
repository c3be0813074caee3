"""A camera on PP-OCR (cameras.ocr_engine) in a real daemon: the crops carry the engine, the
workers load it on first use, and its text reaches a subscriber."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.clips import write_line_clip
from support.daemon import Daemon, daemon_config, publish_endpoint
from support.subscriber import Subscriber, text_is

pytestmark = pytest.mark.slow
TEXT = "GATE 7 OPEN"


def test_a_camera_on_ppocr_publishes_its_text(tmp_path: Path) -> None:
    clip = write_line_clip(tmp_path / "line.mp4", [TEXT], frames_each=20)
    config = daemon_config(tmp_path, str(clip), loop=True, max_fps=5.0, ocr_engine="ppocr")
    with Subscriber(publish_endpoint(config)) as sub, Daemon(config) as daemon:
        sub.wait_for(text_is(TEXT), timeout=90)
        assert daemon.terminate(timeout=20) == 0
    loaded = {(e.get("process"), e.get("engine")) for e in daemon.log_events() if e.get("event") == "ocr_engine_loaded"}
    assert ("ocr-0", "ppocr") in loaded and ("ocr-0", "tesserocr") in loaded  # the default at start, ppocr on demand
