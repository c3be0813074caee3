"""Where the bus's sockets are: endpoints from settings, the private runtime dir, a remote worker's --connect."""

from __future__ import annotations

import argparse
import os
import stat
from pathlib import Path

import pytest
from pydantic import ValidationError

from textwatch import bus
from textwatch.config import BusSettings, Settings
from textwatch.errors import ConfigError

# Key paths (not read here) that let a test bind beyond loopback through config validation.
BUS_WITH_KEYS = BusSettings(curve_secret_key=Path("daemon.key_secret"), curve_allowed_keys=Path("clients"))


def test_endpoints_from_settings(tmp_path: Path) -> None:
    settings = Settings(bus=BUS_WITH_KEYS.model_copy())  # beyond loopback needs CURVE keys (process/test_security.py)
    settings.bus.runtime_dir = tmp_path / "run"
    settings.bus.pool = "tcp://0.0.0.0:7000"
    ep = bus.Endpoints.from_settings(settings)
    assert ep.crops == f"ipc://{tmp_path}/run/crops.ipc" and ep.results == f"ipc://{tmp_path}/run/results.ipc"
    assert (ep.pool_crops, ep.pool_results) == ("tcp://0.0.0.0:7000", "tcp://0.0.0.0:7001")
    assert ep.publish == settings.bus.publish
    assert stat.S_IMODE((tmp_path / "run").stat().st_mode) == 0o700
    assert bus.remote_endpoints("tcp://[::1]:7000") == ("tcp://[::1]:7000", "tcp://[::1]:7001")


def test_runtime_dir_fallbacks_and_refusals(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RUNTIME_DIRECTORY", raising=False)
    assert bus.runtime_dir(Settings()) == Path(f"/tmp/textwatch-{os.getuid()}")
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(tmp_path / "sd"))
    assert bus.Endpoints.from_settings(Settings()).runtime_dir == tmp_path / "sd"
    (tmp_path / "target").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "target")
    with pytest.raises(ConfigError, match="symlink"):
        bus.ensure_private_dir(tmp_path / "link")
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o777)
    bus.ensure_private_dir(loose)
    assert stat.S_IMODE(loose.stat().st_mode) == 0o700
    for pool in ("tcp://host", "tcp://host:65535", "ipc:///x", "tcp://:80"):
        settings = Settings(bus=BUS_WITH_KEYS.model_copy())
        # The schema refuses these now (issue 22); Endpoints kept its own refusal for code that builds settings.
        with pytest.raises((ConfigError, ValidationError)):
            settings.bus.pool = pool
            bus.Endpoints.from_settings(settings, create=False)
    settings = Settings()
    settings.bus.runtime_dir = tmp_path / ("x" * 120)
    with pytest.raises(ConfigError, match="longer"):
        bus.Endpoints.from_settings(settings, create=False)


def test_worker_cli_arguments() -> None:
    from textwatch.processes.ocr import add_worker_arguments

    parser = argparse.ArgumentParser()
    add_worker_arguments(parser)
    args = parser.parse_args(["--connect", "tcp://10.0.0.2:7000"])
    assert args.connect == "tcp://10.0.0.2:7000" and args.name is None and args.config is None
