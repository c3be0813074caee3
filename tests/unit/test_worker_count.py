"""One worker count for the pool and for the crops high-water-mark split."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = """
import os, sys
import zmq
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # the service is pinned to one CPU...
os.cpu_count = lambda: 16  # ...of a 16-core host
from textwatch import bus
from textwatch.config import Settings
from textwatch.processes.supervisor import child_specs
settings = Settings.model_validate({"pipeline": {"crop_hwm": 60}, "bus": {"runtime_dir": sys.argv[1]}})
workers = [spec for spec in child_specs(settings) if spec.role == "worker"]
context = zmq.Context()
push = bus.crop_pusher(context, bus.Endpoints.from_settings(settings), settings)
print(len(workers), push.getsockopt(zmq.SNDHWM))
push.close()
context.term()
"""


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="CPU affinity is Linux-only")
def test_the_crop_hwm_is_split_over_the_workers_the_supervisor_starts(tmp_path: Path) -> None:
    """Regression: the pool size followed the CPU affinity mask (os.sched_getaffinity) but the
    crops PUSH split pipeline.crop_hwm by os.cpu_count(); under systemd CPUAffinity= or a
    container's cpuset one worker got a queue of crop_hwm/15 instead of crop_hwm."""
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "run")], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    workers, per_worker_hwm = map(int, out.stdout.split())
    assert workers == 1  # one CPU allowed: one worker (at least one, whatever the cores)
    assert per_worker_hwm == 60 // workers
