"""A camera on its own OCR engine (cameras.ocr_engine) in a real daemon: the crops carry the
engine, a worker loads it on first use beside its default, and the text reaches a subscriber."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.clips import write_line_clip
from support.daemon import Daemon, daemon_config, publish_endpoint
from support.subscriber import Subscriber, text_is

pytestmark = pytest.mark.slow
TEXT = "GATE 7 OPEN"


@pytest.mark.parametrize("default, camera", [("tesserocr", "ppocr"), ("ppocr", "tesserocr")])
def test_a_camera_on_its_own_engine_publishes_its_text(tmp_path: Path, default: str, camera: str) -> None:
    clip = write_line_clip(tmp_path / "line.mp4", [TEXT], frames_each=20)
    config = daemon_config(tmp_path, str(clip), loop=True, max_fps=5.0, default_engine=default, ocr_engine=camera)
    with Subscriber(publish_endpoint(config)) as sub, Daemon(config) as daemon:
        sub.wait_for(text_is(TEXT), timeout=90)
        assert daemon.terminate(timeout=20) == 0
    loaded = [e.get("engine") for e in daemon.log_events() if e.get("event") == "ocr_engine_loaded" and e.get("process") == "ocr-0"]
    assert loaded[:2] == [default, camera]  # the default at start, the camera's on its first crop
