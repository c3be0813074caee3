"""The real `textwatch` console script, run the way a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def textwatch_exe() -> Path:
    """The venv's `textwatch` console script (beside the running interpreter)."""
    return Path(sys.executable).with_name("textwatch")


def process_command(module: str, *args: str) -> list[str]:
    """One daemon process on its own: `python -m textwatch.processes.MODULE CONFIG ...`."""
    return [sys.executable, "-m", f"textwatch.processes.{module}", *args]


def run_cli(*args: str, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    """The real `textwatch` console script in a subprocess."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([str(textwatch_exe()), *args], capture_output=True, text=True, timeout=timeout, env=env, **kwargs)


def run_status(*args: str) -> subprocess.CompletedProcess:
    """`textwatch status` through its module (`python -m textwatch.tools.status`) in a subprocess."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "textwatch.tools.status", *args], capture_output=True, text=True,
                          timeout=30, env=env)
