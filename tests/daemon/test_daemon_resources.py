"""Bounded resources (issue 6) in a real daemon: recycled workers are replaced outside the restart budget.

The Tesseract deadline, the recycling policy and one worker on real sockets are in process/test_resources.py.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from support.clips import write_line_clip
from support.daemon import Daemon, daemon_config, publish_endpoint
from support.subscriber import Subscriber, text_is
from support.wait import wait_until
from textwatch.errors import ExitCode


@pytest.mark.slow
def test_recycled_workers_are_replaced_outside_the_restart_budget(tmp_path: Path) -> None:
    """With restart_budget = 0 any counted restart would stop the daemon (exit 1); recycles must not."""
    clip = write_line_clip(tmp_path / "line.mp4", ["RECYCLE 75"], frames_each=20)
    config = daemon_config(tmp_path, str(clip), loop=True, realtime=False, max_fps=10.0)
    text = config.read_text().replace("restart_budget = 20", "restart_budget = 0\nworker_max_crops = 5")
    config.write_text(text.replace("[detector]", "[tracking]\nenabled = false\n\n[detector]"))
    with Subscriber(publish_endpoint(config)) as sub, Daemon(config) as daemon:
        wait_until(lambda: len(daemon.child_pids("ocr-")) >= 3, 60, 0.2, lambda: daemon.log_text()[-2000:])
        assert len(daemon.child_pids("ocr-")) >= 3, daemon.log_text()[-2000:]
        recycled = [e for e in daemon.log_events() if e.get("event") == "worker_recycled"]
        assert len(recycled) >= 2
        assert not any(e.get("event") == "restart_budget_exhausted" for e in daemon.log_events())
        restarted_at = time.time()
        sub.wait_for(lambda t, b: text_is("RECYCLE 75")(t, b) and b["ts"] > restarted_at, timeout=30)
        assert daemon.process.poll() is None
        assert daemon.terminate(timeout=20) == ExitCode.OK
