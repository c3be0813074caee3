"""Security of the bus (issue 6, part 4): CURVE on tcp binds, ZAP allow-list, key files, private ipc.

Real sockets with timeouts and keys made by `textwatch keys generate`. A real
daemon publishing on 0.0.0.0 is in daemon/test_daemon_security.py.
"""

from __future__ import annotations

import argparse
import stat
import threading
import time
from pathlib import Path

import pytest
import zmq
import zmq.auth

from support.cli import run_cli
from support.keys import QUIET_S, Keys, make_keys
from support.ports import free_port
from support.subscriber import received_within
from textwatch import bus, wire
from textwatch.config import binds_beyond_loopback, load_settings
from textwatch.errors import ConfigError, ExitCode
from textwatch.tools.keys import add_keys_arguments, run_keys


# ---------------------------------------------------------------- keys and config


def test_keys_generate_writes_a_private_secret_and_refuses_to_overwrite(tmp_path: Path, capsys) -> None:
    public, secret = make_keys(tmp_path / "k", "worker1")
    out = capsys.readouterr().out
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert stat.S_IMODE(public.stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "k").stat().st_mode) == 0o700
    assert "curve_allowed_keys" in out and "curve_server_key" in out and str(secret) in out
    pub, sec = zmq.auth.load_certificate(secret)
    assert sec is not None and zmq.auth.load_certificate(public) == (pub, None)
    parser = argparse.ArgumentParser()
    add_keys_arguments(parser)
    assert run_keys(parser.parse_args(["generate", str(tmp_path / "k"), "--name", "worker1"])) == ExitCode.USAGE
    with pytest.raises(SystemExit):
        parser.parse_args(["generate", str(tmp_path), "--name", "../escape"])


@pytest.mark.parametrize(
    ("endpoint", "beyond"),
    [
        ("tcp://127.0.0.1:5560", False), ("tcp://127.0.0.2:5560", False), ("tcp://[::1]:5560", False),
        ("tcp://localhost:5560", False), ("ipc:///run/x.ipc", False), ("tcp://0.0.0.0:5560", True),
        ("tcp://*:5560", True), ("tcp://[::]:5560", True), ("tcp://eth0:5560", True), ("tcp://10.0.0.5:5560", True),
    ],
)
def test_what_binds_beyond_loopback(endpoint: str, beyond: bool) -> None:
    assert binds_beyond_loopback(endpoint) is beyond


@pytest.mark.parametrize("line", ['publish = "tcp://0.0.0.0:5560"', 'pool = "tcp://*:5570"'])
def test_check_and_run_refuse_a_public_bind_without_keys(tmp_path: Path, line: str) -> None:
    config = tmp_path / "public.toml"
    config.write_text(f"[bus]\n{line}\n")
    for command in ("check", "run"):
        result = run_cli(command, "-c", str(config), timeout=60)
        assert result.returncode == ExitCode.CONFIG, result.stderr
        assert result.stderr.count("\n") == 1 and "binds beyond loopback" in result.stderr


def test_keys_must_come_in_pairs_and_resolve_against_the_config(tmp_path: Path, keys: Keys) -> None:
    half = tmp_path / "half.toml"
    half.write_text(f'[bus]\ncurve_secret_key = "{keys.server_secret}"\n')
    with pytest.raises(ConfigError, match="go together"):
        load_settings(half)
    relative = keys.server_secret.parent / "relative.toml"
    relative.write_text('[bus]\npublish = "tcp://0.0.0.0:5560"\ncurve_secret_key = "daemon.key_secret"\ncurve_allowed_keys = "../allowed"\n')
    settings = load_settings(relative)
    assert settings.bus.curve_secret_key == keys.server_secret
    assert settings.bus.curve_allowed_keys == keys.allowed
    bus.check_curve(settings)


def test_unusable_key_files_are_config_errors(keys: Keys) -> None:
    keys.server_secret.chmod(0o640)
    with pytest.raises(ConfigError, match="readable by others"):
        keys.server()
    keys.server_secret.chmod(0o600)
    public_only = keys.server_public.with_name("public-only.key_secret")
    public_only.write_bytes(keys.server_public.read_bytes())
    public_only.chmod(0o600)
    with pytest.raises(ConfigError, match="holds no secret key"):
        bus.ClientCurve.from_files(public_only, keys.server_public)
    with pytest.raises(ConfigError, match="no such file"):
        bus.ClientCurve.from_files(keys.client_secret, keys.allowed / "nope.key")


# ---------------------------------------------------------------- sockets


def test_curve_applies_to_tcp_binds_only_and_admits_only_allowed_keys(tmp_path: Path, keys: Keys) -> None:
    """ipc stays plain; on tcp a NULL client and a CURVE client with an unknown key get nothing."""
    ctx = zmq.Context()
    curve = keys.server()
    authenticator = bus.start_authenticator(ctx, curve)
    ipc, tcp = bus.ipc_endpoint(tmp_path / "push.ipc"), f"tcp://127.0.0.1:{free_port()}"
    push = bus.make_socket(ctx, zmq.PUSH, linger_ms=0)
    clients: dict[str, zmq.Socket] = {}
    try:
        bus.bind(push, [tcp, ipc], curve)
        assert stat.S_IMODE((tmp_path / "push.ipc").stat().st_mode) & 0o077 == 0
        for name, endpoint, client in [
            ("ipc", ipc, None), ("allowed", tcp, keys.client()), ("plain", tcp, None), ("stranger", tcp, keys.stranger()),
        ]:
            clients[name] = bus.make_socket(ctx, zmq.PULL, linger_ms=0)
            bus.connect(clients[name], endpoint, client)
        deadline = time.monotonic() + 10
        got = {name: 0 for name in clients}
        while time.monotonic() < deadline and not (got["allowed"] and got["ipc"]):
            try:
                push.send(b"crop", zmq.NOBLOCK)
            except zmq.Again:
                pass
            for name, sock in clients.items():
                got[name] += len(received_within(sock, 0.02))
        for _ in range(20):
            push.send(b"crop", zmq.NOBLOCK)
        for name in ("plain", "stranger"):
            got[name] += len(received_within(clients[name], QUIET_S / 2))
        assert got["allowed"] and got["ipc"], got
        assert got["plain"] == 0 and got["stranger"] == 0, got
    finally:
        for sock in [push, *clients.values()]:
            sock.close()
        authenticator.stop()
        ctx.term()


def test_a_curve_server_without_its_authenticator_admits_nobody(keys: Keys) -> None:
    """ZAP_ENFORCE_DOMAIN: libzmq would otherwise let every CURVE client in when no ZAP handler runs."""
    ctx = zmq.Context()
    tcp = f"tcp://127.0.0.1:{free_port()}"
    push = bus.make_socket(ctx, zmq.PUSH, linger_ms=0)
    pull = bus.make_socket(ctx, zmq.PULL, linger_ms=0)
    try:
        bus.bind(push, [tcp], keys.server())
        bus.connect(pull, tcp, keys.client())
        deadline = time.monotonic() + QUIET_S
        while time.monotonic() < deadline:
            with pytest.raises(zmq.Again):  # no pipe was ever admitted
                push.send(b"crop", zmq.NOBLOCK)
            assert not pull.poll(100)
    finally:
        push.close()
        pull.close()
        ctx.term()


def test_crop_pusher_owns_its_authenticator_and_close_lets_the_context_end(tmp_path: Path, keys: Keys) -> None:
    settings = keys.settings(runtime_dir=tmp_path / "run", pool=f"tcp://0.0.0.0:{free_port()}")
    settings.pipeline.workers = 1
    endpoints = bus.Endpoints.from_settings(settings)
    ctx = zmq.Context()
    push = bus.crop_pusher(ctx, endpoints, settings)
    assert isinstance(push, bus.AuthenticatedSocket) and push.authenticator is not None
    pull = bus.crop_puller(ctx, endpoints.pool_crops.replace("0.0.0.0", "127.0.0.1"), keys.client())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not pull.poll(50):
        try:
            push.send(b"crop", zmq.NOBLOCK)
        except zmq.Again:
            pass
    assert pull.recv(zmq.NOBLOCK) == b"crop"
    pull.close()
    push.close(linger=0)
    ended = threading.Thread(target=ctx.term, daemon=True)
    ended.start()
    ended.join(timeout=5)
    assert not ended.is_alive(), "ctx.term() hangs: the authenticator was not stopped"


def test_subscribe_uses_its_curve_flags(tmp_path: Path, keys: Keys) -> None:
    """`textwatch subscribe --curve-secret-key --curve-server-key` gets messages; without keys it times out."""
    ctx = zmq.Context()
    authenticator = bus.start_authenticator(ctx, keys.server())
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    pub = bus.make_socket(ctx, zmq.PUB, linger_ms=0)
    bus.bind(pub, [endpoint], keys.server())
    stop = threading.Event()

    def publish() -> None:
        while not stop.wait(0.1):
            stats = wire.WorkerStats(process="test", ts=1.0, crops_read=0, text=0, empty=0, failed=0, timeouts=0,
                                     rejected=0, ocr_ms_total=0.0)
            pub.send_multipart(wire.encode_published(wire.TOPIC_STATS, stats))

    sender = threading.Thread(target=publish, daemon=True)
    sender.start()
    try:
        ok = run_cli(
            "subscribe", "--endpoint", endpoint, "--count", "1", "--timeout", "20",
            "--curve-secret-key", str(keys.client_secret), "--curve-server-key", str(keys.server_public), timeout=60,
        )
        assert ok.returncode == ExitCode.OK and ok.stdout.startswith("stats test"), ok.stderr
        plain = run_cli("subscribe", "--endpoint", endpoint, "--count", "1", "--timeout", str(QUIET_S), timeout=60)
        assert plain.returncode == ExitCode.PARTIAL and plain.stdout == ""
    finally:
        stop.set()
        sender.join(timeout=5)
        pub.close()
        authenticator.stop()
        ctx.term()
