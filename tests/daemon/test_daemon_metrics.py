"""A real daemon's Prometheus endpoint scraped over HTTP, and `textwatch status` on it.

The stats -> metrics conversion and `textwatch status` on its own are in process/test_metrics.py.
"""

from __future__ import annotations

import time
import urllib.request

import pytest

from support.cli import run_status
from support.clips import write_line_clip
from support.daemon import Daemon, daemon_config
from support.ports import free_port
from textwatch.tools import status


@pytest.mark.slow
def test_a_running_daemon_serves_metrics_and_status_says_healthy(tmp_path) -> None:
    clip = write_line_clip(tmp_path / "line.mp4", ["TEXTWATCH 42"], frames_each=20)
    port = free_port()
    config = daemon_config(tmp_path, str(clip), loop=True, metrics_port=port, max_fps=5.0)
    url = f"http://127.0.0.1:{port}/metrics"
    with Daemon(config) as daemon:
        deadline, samples = time.monotonic() + 60, {}
        while time.monotonic() < deadline:
            try:
                text = urllib.request.urlopen(url, timeout=3).read().decode()
            except OSError:
                time.sleep(0.5)
                continue
            samples = status.parse(text)
            memory = {labels["process"] for labels, _ in samples.get("process_resident_memory_bytes", [])}
            if (
                _total(samples, "frames_read_total") > 0
                and _total(samples, "ocr_latency_seconds_count") > 0
                and {"publisher", "detect-0", "ocr-0"} <= memory
                and _total(samples, "source_up") == 1
            ):
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"metrics incomplete after 60 s: {dict(samples)}\n{daemon.log_text()[-3000:]}")
        assert str(clip) not in text and "line.mp4" not in text
        assert all(value > 1 << 20 for _, value in samples["process_resident_memory_bytes"])

        healthy = run_status("-c", str(config))
        assert healthy.returncode == 0, healthy
        assert "cam1" in healthy.stdout and "up" in healthy.stdout and "p50" in healthy.stdout
        assert daemon.terminate(timeout=20) == 0


def _total(samples: status.Samples, name: str) -> float:
    return sum(value for _, value in samples.get(name, []))
