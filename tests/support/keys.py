"""CURVE key pairs made the way a user makes them, `textwatch keys generate`, for the bus security tests."""

from __future__ import annotations

import argparse
from pathlib import Path

from textwatch import bus
from textwatch.config import BusSettings, Settings
from textwatch.errors import ExitCode
from textwatch.tools.keys import add_keys_arguments, run_keys

QUIET_S = 2.0  # an unauthorised client must get nothing for this long


def make_keys(folder: Path, name: str) -> tuple[Path, Path]:
    """`textwatch keys generate FOLDER --name NAME` (through its module: argparse and all)."""
    parser = argparse.ArgumentParser()
    add_keys_arguments(parser)
    assert run_keys(parser.parse_args(["generate", str(folder), "--name", name])) == ExitCode.OK
    return folder / f"{name}.key", folder / f"{name}.key_secret"


class Keys:
    """A daemon pair, an allow-listed client pair and a stranger's pair, in tmp_path/keys."""

    def __init__(self, tmp_path: Path) -> None:
        root = tmp_path / "keys"
        self.server_public, self.server_secret = make_keys(root / "daemon", "daemon")
        self.client_public, self.client_secret = make_keys(root / "client", "client")
        _, self.stranger_secret = make_keys(root / "stranger", "stranger")
        self.allowed = root / "allowed"
        self.allowed.mkdir()
        (self.allowed / "client.key").write_bytes(self.client_public.read_bytes())

    def bus_lines(self) -> str:
        return f'curve_secret_key = "{self.server_secret}"\ncurve_allowed_keys = "{self.allowed}"\n'

    def settings(self, **bus_values: object) -> Settings:
        """Settings with the daemon's keys (one BusSettings: the pair is validated together)."""
        return Settings(bus=BusSettings(curve_secret_key=self.server_secret, curve_allowed_keys=self.allowed, **bus_values))

    def server(self) -> bus.ServerCurve:
        curve = bus.ServerCurve.from_settings(self.settings())
        assert curve is not None
        return curve

    def client(self) -> bus.ClientCurve:
        return bus.ClientCurve.from_files(self.client_secret, self.server_public)

    def stranger(self) -> bus.ClientCurve:
        return bus.ClientCurve.from_files(self.stranger_secret, self.server_public)
