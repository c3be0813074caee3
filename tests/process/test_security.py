"""Security of the bus (issue 6, part 4): CURVE on tcp binds, ZAP allow-list, key files, private ipc.

Real sockets with timeouts, keys made by `textwatch keys generate`, and one real
daemon publishing on 0.0.0.0: an unauthenticated subscriber (no CURVE, or a key
not in the allow-list) gets nothing, an authorised one gets the text.
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
from support.clips import write_line_clip
from support.daemon import Daemon, daemon_config
from support.ports import free_port
from support.subscriber import Subscriber, text_is
from textwatch import bus, wire
from textwatch.config import BusSettings, Settings, binds_beyond_loopback, load_settings
from textwatch.errors import ConfigError, ExitCode
from textwatch.tools.keys import add_keys_arguments, run_keys

TEXT = "TEXTWATCH 42"
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


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return Keys(tmp_path)


def received_within(sock: zmq.Socket, seconds: float) -> list[list[bytes]]:
    got = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if sock.poll(int(left * 1000) + 1):
            got.append(sock.recv_multipart())
    return got


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
            pub.send_multipart(wire.encode_published(wire.TOPIC_STATS, {"process": "test", "role": "test", "ts": 1.0}))

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


# ---------------------------------------------------------------- a real daemon on 0.0.0.0


class CurveSubscriber(Subscriber):
    """The harness's Subscriber, connecting as a CURVE client when given keys."""

    def __init__(self, endpoint: str, curve: bus.ClientCurve | None) -> None:
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.SUB)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt_string(zmq.SUBSCRIBE, "")
        bus.connect(self.socket, endpoint, curve)
        self.seen = []


def test_a_daemon_bound_on_all_interfaces_serves_only_allowed_keys(tmp_path: Path, keys: Keys) -> None:
    clip = write_line_clip(tmp_path / "line.mp4", [TEXT], frames_each=20)
    publish, pool = free_port(), free_port()
    while pool + 1 in (publish, free_port()):
        pool = free_port()
    extra = f'pool = "tcp://0.0.0.0:{pool}"\n' + keys.bus_lines()
    config = daemon_config(tmp_path, str(clip), loop=True, max_fps=10.0, extra=extra)
    text = config.read_text()
    loopback_line = next(line for line in text.splitlines() if line.startswith("publish = "))
    config.write_text(text.replace(loopback_line, f'publish = "tcp://0.0.0.0:{publish}"'))
    assert run_cli("check", "-c", str(config), timeout=120).returncode == ExitCode.OK

    here = f"tcp://127.0.0.1:{publish}"
    run = tmp_path / "run"
    with (
        CurveSubscriber(here, keys.client()) as allowed,
        CurveSubscriber(here, None) as plain,
        CurveSubscriber(here, keys.stranger()) as stranger,
        Daemon(config) as daemon,
    ):
        allowed.wait_for(text_is(TEXT), timeout=60)
        assert received_within(plain.socket, QUIET_S) == [] and received_within(stranger.socket, 0.1) == []

        # ipc: the folder is private, the sockets in it too; same-user tools need no keys on publish.ipc
        assert stat.S_IMODE(run.stat().st_mode) == 0o700
        sockets = sorted(run.glob("*.ipc"))
        assert {p.name for p in sockets} >= {"crops.ipc", "results.ipc", "publish.ipc"}
        assert all(stat.S_ISSOCK(p.stat().st_mode) and stat.S_IMODE(p.stat().st_mode) & 0o077 == 0 for p in sockets)
        with Subscriber(f"ipc://{run / 'publish.ipc'}") as local:
            local.wait_for(text_is(TEXT), timeout=30)

        # the pool: an allow-listed remote worker gets crops and its results reach subscribers
        ctx = zmq.Context()
        crops_ep, results_ep = bus.remote_endpoints(f"tcp://127.0.0.1:{pool}")
        outsider_results = bus.result_publisher(ctx, results_ep, keys.stranger())
        outsider_crops = bus.crop_puller(ctx, crops_ep, None)
        results = bus.result_publisher(ctx, results_ep, keys.client())
        crops = bus.crop_puller(ctx, crops_ep, keys.client())
        try:
            assert bus.wait_for_subscriber(results, 15)
            header, _ = wire.decode_crop(crops.recv_multipart() if crops.poll(30_000) else pytest.fail("no crop"))
            assert header.camera == "cam1"
            forged = wire.TextResult(
                camera="cam1", seq=header.seq, ts=time.time(), region=0, regions=1, box=(0, 0, 1, 1),
                confidence=0.5, status="text", text="REMOTE OK", ocr_confidence=90.0, worker="remote-1", latency_ms=1.0,
            )
            results.send_multipart(wire.encode_published(wire.TOPIC_TEXT, forged, "cam1"))
            allowed.wait_for(text_is("REMOTE OK"), timeout=15)
            assert not bus.wait_for_subscriber(outsider_results, QUIET_S)
            assert received_within(outsider_crops, 0.5) == []
        finally:
            for sock in (outsider_results, outsider_crops, results, crops):
                sock.close(linger=0)
            ctx.term()
        assert daemon.terminate(timeout=30) == 0
