"""Security of the bus (issue 6, part 4) in a real daemon publishing on 0.0.0.0.

An unauthenticated subscriber (no CURVE, or a key not in the allow-list) gets
nothing, an authorised one gets the text; the ipc folder and sockets are
private; only an allow-listed remote worker takes part in the pool. CURVE,
ZAP and key files on their own are in process/test_security.py.
"""

from __future__ import annotations

import stat
import time
from pathlib import Path

import pytest
import zmq

from support.cli import run_cli
from support.clips import write_line_clip
from support.daemon import Daemon, daemon_config
from support.keys import QUIET_S, Keys
from support.ports import free_port, free_port_pair
from support.subscriber import Subscriber, received_within, text_is
from textwatch import bus, wire
from textwatch.errors import ExitCode

TEXT = "TEXTWATCH 42"


def test_a_daemon_bound_on_all_interfaces_serves_only_allowed_keys(tmp_path: Path, keys: Keys) -> None:
    clip = write_line_clip(tmp_path / "line.mp4", [TEXT], frames_each=20)
    pool = free_port_pair()  # the pool binds POOL (crops) and POOL+1 (results)
    publish = free_port()
    while publish in (pool, pool + 1):
        publish = free_port()
    extra = f'pool = "tcp://0.0.0.0:{pool}"\n' + keys.bus_lines()
    config = daemon_config(tmp_path, str(clip), loop=True, max_fps=10.0, extra=extra)
    text = config.read_text()
    loopback_line = next(line for line in text.splitlines() if line.startswith("publish = "))
    config.write_text(text.replace(loopback_line, f'publish = "tcp://0.0.0.0:{publish}"'))
    assert run_cli("check", "-c", str(config), timeout=120).returncode == ExitCode.OK

    here = f"tcp://127.0.0.1:{publish}"
    run = tmp_path / "run"
    with (
        Subscriber(here, curve=keys.client()) as allowed,
        Subscriber(here) as plain,
        Subscriber(here, curve=keys.stranger()) as stranger,
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
                camera="cam1", seq=header.seq, ts=time.time(), region=header.region, regions=header.regions, box=(0, 0, 1, 1),
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
