"""The bus with real sockets: wire hostility, endpoints, aggregator, and real worker/publisher processes.

Every receive has a timeout. The processes are real subprocesses on ipc sockets
in a temporary folder and tcp loopback on random free ports; they get a real
SIGTERM at the end and must exit 0.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import zmq

from textwatch import bus, wire
from textwatch.config import BusSettings, Settings, load_settings
from textwatch.errors import ConfigError
from textwatch.processes.publisher import LOST_AFTER_TIMEOUTS, FrameAggregator
from textwatch.wire import FrameNotice
from textwatch.tools.samples import line_crop
from textwatch.tools.subscribe import format_line

RECV_TIMEOUT_S = 10.0
# Key paths (not read here) that let a test bind beyond loopback through config validation.
BUS_WITH_KEYS = BusSettings(curve_secret_key=Path("daemon.key_secret"), curve_allowed_keys=Path("clients"))


# ---------------------------------------------------------------- helpers


def header(camera: str = "cam", seq: int = 0, region: int = 0, regions: int = 1, shape=(40, 120, 3)) -> wire.CropHeader:
    return wire.CropHeader(
        camera=camera, seq=seq, ts=time.time(), region=region, regions=regions,
        box=(10, 20, 10 + shape[1], 20 + shape[0]), confidence=0.9, text_height=shape[0] * 0.62, shape=tuple(shape),
    )


def crop_message(text: str, camera: str, seq: int = 0, region: int = 0, regions: int = 1) -> list:
    pixels = line_crop(text)
    return wire.encode_crop(header(camera, seq, region, regions, pixels.shape), pixels)


def text_result(camera: str = "cam", seq: int = 0, region: int = 0, regions: int = 1, text: str = "x", ts: float = 100.0) -> wire.TextResult:
    return wire.TextResult(
        camera=camera, seq=seq, ts=ts, region=region, regions=regions, box=(0, 0, 1, 1), confidence=0.5,
        status="text", text=text, ocr_confidence=90.0, worker="w", latency_ms=1.0,
    )


def free_port_pair() -> int:
    """A port P with P and P+1 both free on 127.0.0.1."""
    for _ in range(100):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port = first.getsockname()[1]
            if port >= 65535:
                continue
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port pair")


def receive(sock: zmq.Socket, until, timeout_s: float = RECV_TIMEOUT_S) -> list[tuple[str, dict]]:
    """Decoded messages from `sock` until `until(messages)` is true; fails after timeout_s."""
    messages: list[tuple[str, dict]] = []
    deadline = time.monotonic() + timeout_s
    while not until(messages):
        left = deadline - time.monotonic()
        assert left > 0, f"timed out; got {[m[0] for m in messages][-20:]}"
        if sock.poll(int(min(left, 0.2) * 1000), zmq.POLLIN):
            messages.append(wire.decode_published(sock.recv_multipart()))
    return messages


def wait_subscribed(producer: zmq.Socket, prefix: bytes, timeout_s: float = RECV_TIMEOUT_S) -> None:
    """Wait until the publisher's subscription to `prefix` has reached `producer` (an XPUB)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if producer.poll(100) and producer.recv() == b"\x01" + prefix:
            return
    pytest.fail(f"subscription to {prefix!r} never reached the producer")


def has(topic: str, pred=lambda p: True):
    return lambda messages: any(t == topic and pred(p) for t, p in messages)


# ---------------------------------------------------------------- wire


def test_crop_round_trip() -> None:
    pixels = line_crop("Sample Text")
    h = header(shape=pixels.shape)
    got_header, got_pixels = wire.decode_crop([bytes(f) for f in wire.encode_crop(h, pixels)])
    assert got_header == h
    assert np.array_equal(got_pixels, pixels)


def test_published_round_trip() -> None:
    result = text_result(camera="door", region=1, regions=2)
    name, payload = wire.decode_published(wire.encode_published(wire.TOPIC_TEXT, result, "door"))
    assert name == "text.door" and wire.text_result_from_dict(payload) == result
    frame = wire.FrameResult("door", 0, 1.0, [payload], missing=[0], complete=False)
    assert wire.decode_published(wire.encode_published(wire.TOPIC_FRAME, frame, "door"))[1]["missing"] == [0]
    assert wire.decode_published(wire.encode_published(wire.TOPIC_STATS, {"process": "w"}))[0] == "stats"


HOSTILE_VALUES = [
    None, True, False, -1, 0, 2**64, -(2**63), 10**30, 1e308, -0.0, "", "x" * 1000, "\u0000", [], [1] * 4,
    [-1, -1, -1, -1], [2**40, 2**40, 3], [100_000, 100_000, 3], [1, 1, 2], [0, 5, 3], {}, {"a": 1}, [[1]], 1.5,
]
RAW_LITERALS = [b"NaN", b"Infinity", b"-Infinity", b"1e999", b"9" * 5000, b"[" * 50_000, b'"\\ud800"']


def hostile_cases(rng: random.Random, n: int):
    """Seeded hostile inputs: random bytes, wrong frame counts, mutated valid headers, raw JSON literals."""
    valid = dict(json.loads(bytes(wire.encode_crop(header(shape=(2, 3, 3)), np.zeros((2, 3, 3), np.uint8))[0])))
    keys = list(valid)
    for i in range(n):
        kind = i % 5
        if kind == 0:
            yield [rng.randbytes(rng.randint(0, 64)) for _ in range(rng.randint(0, 4))]
        elif kind == 1:
            mutated = dict(valid)
            for key in rng.sample(keys, rng.randint(1, 3)):
                if rng.random() < 0.15:
                    mutated.pop(key)
                else:
                    mutated[key] = rng.choice(HOSTILE_VALUES)
            yield [json.dumps(mutated).encode(), rng.randbytes(rng.choice([0, 17, 18, 19]))]
        elif kind == 2:
            key = rng.choice(keys)
            raw = json.dumps({**valid, key: "@@"}).encode().replace(b'"@@"', rng.choice(RAW_LITERALS))
            yield [raw, bytes(18)]
        elif kind == 3:
            good = [json.dumps(valid).encode(), bytes(18)]
            yield good[: rng.randint(0, 1)] + [bytes(rng.randint(0, 3))] * rng.randint(0, 3)
        else:
            data = bytearray(json.dumps(valid).encode())
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            yield [bytes(data), bytes(18)]


def test_hostile_bytes_raise_only_wire_error() -> None:
    """2000 seeded hostile messages through every decoder: a WireError or a valid result, nothing else."""
    rng = random.Random(20261125)
    outcomes = {"ok": 0, "wire_error": 0}
    for frames in hostile_cases(rng, 2000):
        for decode in (wire.decode_crop, wire.decode_published, _decode_text_result):
            try:
                decode(frames)
                outcomes["ok"] += 1
            except wire.WireError:
                outcomes["wire_error"] += 1
    assert outcomes["wire_error"] > 5000  # almost all hostile cases are refused


def _decode_text_result(frames: list[bytes]) -> wire.TextResult:
    return wire.text_result_from_dict(wire.decode_published(frames)[1])


def test_over_long_integer_is_a_wire_error() -> None:
    """Regression: a 5000-digit JSON integer raised a bare ValueError (Python's int-digits limit), not WireError."""
    with pytest.raises(wire.WireError):
        wire.decode_published([b"stats", b'{"v":' + b"1" * 5000 + b"}"])


def test_nan_and_huge_shapes_are_refused() -> None:
    h = json.loads(bytes(wire.encode_crop(header(shape=(2, 3, 3)), np.zeros((2, 3, 3), np.uint8))[0]))
    for bad in ({"ts": "NaN"}, {"confidence": "Infinity"}, {"shape": [100_000, 100_000, 3]}, {"shape": [2, 3, 4]}):
        raw = json.dumps({**h, **{k: "@@" for k in bad}}).encode()
        value = next(iter(bad.values()))
        raw = raw.replace(b'"@@"', value.encode() if isinstance(value, str) else json.dumps(value).encode())
        with pytest.raises(wire.WireError):
            wire.decode_crop([raw, bytes(18)])


# ---------------------------------------------------------------- endpoints


def test_endpoints_from_settings(tmp_path: Path) -> None:
    settings = Settings(bus=BUS_WITH_KEYS.model_copy())  # beyond loopback needs CURVE keys (test_security.py)
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
        settings.bus.pool = pool
        with pytest.raises(ConfigError):
            bus.Endpoints.from_settings(settings, create=False)
    settings = Settings()
    settings.bus.runtime_dir = tmp_path / ("x" * 120)
    with pytest.raises(ConfigError, match="longer"):
        bus.Endpoints.from_settings(settings, create=False)


# ---------------------------------------------------------------- aggregator


def test_aggregator_publishes_a_complete_frame_sorted_by_region() -> None:
    agg = FrameAggregator(timeout_s=2.0)
    assert agg.add(text_result(region=2, regions=3, text="c"), now=100.1) == []
    assert agg.add(text_result(region=0, regions=3, text="a"), now=100.2) == []
    [frame] = agg.add(text_result(region=1, regions=3, text="b"), now=100.3)
    assert frame.complete and frame.missing == [] and [r["text"] for r in frame.regions] == ["a", "b", "c"]
    assert frame.latency_ms == pytest.approx(300.0)
    assert agg.add(text_result(region=1, regions=3), now=100.4) == [] and agg.counters.late == 1
    assert len(agg) == 0 and agg.expire(now=1e9) == []


def test_aggregator_times_out_an_incomplete_frame_with_missing() -> None:
    agg = FrameAggregator(timeout_s=2.0)
    agg.add(text_result(seq=7, region=0, regions=3), now=100.0)
    agg.add(text_result(seq=7, region=0, regions=3), now=100.5)
    assert agg.counters.duplicates == 1
    agg.add(text_result(seq=8, region=1, regions=2), now=101.0)
    assert agg.expire(now=101.9) == []
    [frame] = agg.expire(now=102.0)
    assert (frame.seq, frame.complete, frame.missing, len(frame.regions)) == (7, False, [1, 2], 1)
    [frame] = agg.expire(now=103.0)
    assert (frame.seq, frame.missing) == (8, [0])
    assert agg.counters.incomplete == 2 and len(agg) == 0
    assert agg.counters.regions_missing == 3, "a lost crop must be counted, not only listed in its frame"


def test_aggregator_publishes_a_frame_whose_every_crop_was_lost() -> None:
    """Regression: a frame whose only crops died with a killed worker vanished without a count, because
    the aggregator learnt of frames from their first result. Detect's FrameNotice announces them now."""
    agg = FrameAggregator(timeout_s=2.0)
    assert agg.expect(FrameNotice("cam", 5, 99.0, 2, 2), now=100.0) == []
    assert agg.next_deadline() == 100.0 + LOST_AFTER_TIMEOUTS * 2.0
    assert agg.expire(now=100.0 + LOST_AFTER_TIMEOUTS * 2.0 - 0.1) == [], "a backlog in the pool is not a loss"
    [frame] = agg.expire(now=100.0 + LOST_AFTER_TIMEOUTS * 2.0)
    assert (frame.seq, frame.complete, frame.missing, frame.regions) == (5, False, [0, 1], [])
    assert (agg.counters.lost, agg.counters.regions_missing, len(agg)) == (1, 2, 0)
    agg.add(text_result(seq=5, region=0, regions=2), now=200.0)
    assert agg.counters.late == 1


def test_aggregator_frame_notice_and_results_in_either_order() -> None:
    agg = FrameAggregator(timeout_s=2.0)
    agg.expect(FrameNotice("cam", 7, 99.0, 1, 1), now=100.0)
    [frame] = agg.add(text_result(seq=7, region=0, regions=1), now=100.5)
    assert frame.complete and agg.expect(FrameNotice("cam", 7, 99.0, 1, 1), now=100.6) == []
    agg.add(text_result(seq=8, region=0, regions=2), now=101.0)
    agg.expect(FrameNotice("cam", 8, 99.0, 2, 2), now=101.1)  # after its first region: the 2 s deadline stays
    [frame] = agg.expire(now=103.0)
    assert (frame.seq, frame.missing) == (8, [1])
    assert (agg.counters.lost, agg.counters.incomplete, agg.counters.regions_missing) == (0, 1, 1)
    assert agg.flush(now=104.0) == [] and agg.next_deadline() is None


def test_aggregator_loses_at_once_a_frame_the_full_pool_refused() -> None:
    """Regression: frames whose every crop was dropped at a full pool waited the 30 s lost deadline,
    and their 30 s latency swamped the bench's p95."""
    agg = FrameAggregator(timeout_s=2.0)
    [frame] = agg.expect(FrameNotice("cam", 9, 99.5, 3, 0), now=100.0)
    assert (frame.seq, frame.complete, frame.missing, frame.latency_ms) == (9, False, [0, 1, 2], 500.0)
    assert (agg.counters.lost, agg.counters.regions_missing, agg.next_deadline()) == (1, 3, None)


def test_aggregator_memory_is_bounded() -> None:
    agg = FrameAggregator(timeout_s=60.0, max_pending=10)
    emitted = []
    for seq in range(1000):
        emitted += agg.add(text_result(seq=seq, regions=2), now=100.0 + seq * 0.001)
    assert len(agg) == 10 and agg.counters.evicted == 990
    assert [f.seq for f in emitted] == list(range(990)) and all(f.missing == [1] for f in emitted)
    assert len(agg._done) <= 10


# ---------------------------------------------------------------- real processes

PUBLISHER = (
    "import sys; from textwatch.config import load_settings; from textwatch.bus import Endpoints;"
    " from textwatch.processes.publisher import run_publisher; s = load_settings(sys.argv[1]);"
    " raise SystemExit(run_publisher(s, Endpoints.from_settings(s)))"
)
WORKER = (
    "import sys; from textwatch.config import load_settings; from textwatch.bus import Endpoints;"
    " from textwatch.processes.ocr import run_worker; s = load_settings(sys.argv[1]); e = Endpoints.from_settings(s);"
    " raise SystemExit(run_worker(s, e.crops, e.results, sys.argv[2]))"
)
WORKER_CLI = (
    "import argparse, sys; from textwatch.processes.ocr import add_worker_arguments, run_worker_cli;"
    " p = argparse.ArgumentParser(); add_worker_arguments(p); raise SystemExit(run_worker_cli(p.parse_args()))"
)


def spawn(script: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-c", script, *args], env=env, stderr=subprocess.PIPE, text=True)


def stop_process(proc: subprocess.Popen, timeout_s: float = 10.0) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)
        pytest.fail(f"process {proc.args[:3]} ignored SIGTERM")
    finally:
        proc.stderr.close()
    return proc.returncode


@dataclass
class Daemon:
    config: Path
    settings: Settings
    endpoints: bus.Endpoints
    ctx: zmq.Context
    push: zmq.Socket  # the detect process's crops PUSH, played by the test

    def subscriber(self, *prefixes: str, rcvhwm: int = 1000) -> zmq.Socket:
        """A SUB on the publish endpoint, returned once it demonstrably receives (stats arrive)."""
        sock = self.ctx.socket(zmq.SUB)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVHWM, rcvhwm)
        for prefix in (*prefixes, "stats"):
            sock.setsockopt(zmq.SUBSCRIBE, prefix.encode())
        sock.connect(self.endpoints.publish)
        receive(sock, has("stats"))
        return sock


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("bus")
    pool, publish = free_port_pair(), free_port_pair()
    config = folder / "textwatch.toml"
    config.write_text(
        "[pipeline]\nframe_timeout_s = 0.6\nstats_interval_s = 0.3\nworkers = 1\n"
        f'[bus]\nruntime_dir = "{folder / "run"}"\npublish = "tcp://127.0.0.1:{publish}"\n'
        f'pool = "tcp://127.0.0.1:{pool}"\npublish_hwm = 200\n'
    )
    settings = load_settings(config)
    endpoints = bus.Endpoints.from_settings(settings)
    publisher = spawn(PUBLISHER, str(config))
    worker = spawn(WORKER, str(config), "local-1")
    ctx = zmq.Context.instance()
    push = bus.crop_pusher(ctx, endpoints, settings)
    state = Daemon(config, settings, endpoints, ctx, push)
    try:
        sub = state.subscriber("stats")
        receive(sub, has("stats", lambda p: p["process"] == "local-1"), timeout_s=30)
        sub.close()
        yield state
    finally:
        push.close()
        codes = {"worker": stop_process(worker), "publisher": stop_process(publisher)}
    assert codes == {"worker": 0, "publisher": 0}


def test_text_and_complete_frame_arrive_through_the_publisher(daemon: Daemon) -> None:
    sub = daemon.subscriber("text.doc", "frame.doc")
    try:
        daemon.push.send_multipart(crop_message("Align Text", "doc", seq=5, region=1, regions=2))
        daemon.push.send_multipart(crop_message("Sample Text", "doc", seq=5, region=0, regions=2))
        messages = receive(sub, has("frame.doc"))
    finally:
        sub.close()
    texts = {p["region"]: p for t, p in messages if t == "text.doc"}
    assert texts[0]["text"] == "Sample Text" and texts[0]["status"] == "text" and texts[0]["worker"] == "local-1"
    assert texts[1]["text"] == "Align Text" and 0 < texts[0]["latency_ms"] < 10_000
    frame = next(p for t, p in messages if t == "frame.doc")
    assert frame["complete"] and frame["missing"] == [] and frame["seq"] == 5
    assert [r["text"] for r in frame["regions"]] == ["Sample Text", "Align Text"]
    assert format_line("text.doc", texts[0]).startswith("doc 5 [10,20,")


def test_incomplete_frame_is_published_after_the_timeout(daemon: Daemon) -> None:
    sub = daemon.subscriber("frame.gate")
    try:
        sent = time.monotonic()
        daemon.push.send_multipart(crop_message("Sample Text", "gate", seq=1, region=0, regions=3))
        daemon.push.send_multipart(crop_message("EXIT", "gate", seq=1, region=2, regions=3))
        [frame] = [p for t, p in receive(sub, has("frame.gate")) if t == "frame.gate"]
    finally:
        sub.close()
    assert time.monotonic() - sent >= daemon.settings.pipeline.frame_timeout_s
    assert (frame["complete"], frame["missing"]) == (False, [1])
    assert [r["region"] for r in frame["regions"]] == [0, 2]


def test_malformed_crops_are_rejected_and_the_worker_goes_on(daemon: Daemon) -> None:
    sub = daemon.subscriber("text.bad")
    try:
        for frames in ([b"not json", b"x"], [b"{}"], [b"{}", b"", b""], [b'{"v":1}', bytes(100)]):
            daemon.push.send_multipart(frames)
        daemon.push.send_multipart(crop_message("Sample Text", "bad"))
        messages = receive(sub, lambda ms: has("text.bad")(ms) and has(
            "stats", lambda p: p["process"] == "local-1" and p["rejected"] >= 2)(ms))
    finally:
        sub.close()
    assert [p["text"] for t, p in messages if t == "text.bad"] == ["Sample Text"]


def test_malformed_results_are_rejected_by_the_publisher(daemon: Daemon) -> None:
    producer = bus.result_publisher(daemon.ctx, daemon.endpoints.results)
    sub = daemon.subscriber("text.forged", "junk")
    try:
        wait_subscribed(producer, b"junk")
        producer.send_multipart([b"text.forged", b'{"v":1,"camera":"forged"}'])
        producer.send_multipart([b"junk", b"\xff\xfe"])
        producer.send_multipart(wire.encode_published(wire.TOPIC_TEXT, text_result(camera="other"), "forged"))
        producer.send_multipart(wire.encode_published(wire.TOPIC_TEXT, text_result(camera="forged", region=5), "forged"))
        messages = receive(sub, has("stats", lambda p: p["process"] == "publisher" and p["rejected"] >= 4))
    finally:
        producer.close()
        sub.close()
    assert not [t for t, _ in messages if t != "stats"]


def test_slow_subscriber_does_not_block_the_publisher(daemon: Daemon) -> None:
    """A subscriber that never reads loses messages; a fast one keeps getting them all the while."""
    count, payload = 2000, "x" * 16_000
    slow = daemon.subscriber("flood", rcvhwm=10)
    fast = daemon.subscriber("flood")
    producer = bus.result_publisher(daemon.ctx, daemon.endpoints.results)
    producer.setsockopt(zmq.SNDHWM, 0)  # the test's producer must not drop: we count what arrives
    try:
        wait_subscribed(producer, b"flood")
        got: list[int] = []

        def read_fast() -> None:
            end = time.monotonic() + 20
            while time.monotonic() < end:
                if fast.poll(200):
                    name, body = wire.decode_published(fast.recv_multipart())
                    if name == "flood":
                        got.append(body["i"])
                        if body["i"] == -1:
                            return

        reader = threading.Thread(target=read_fast)
        reader.start()
        for i in range(count):
            producer.send_multipart(wire.encode_published("flood", {"i": i, "pad": payload}))
            if i % 50 == 49:
                time.sleep(0.01)  # pace like a real producer; the proxy is not the thing under test
        for _ in range(50):  # the end marker, repeated: it must get through while `slow` is still full
            producer.send_multipart(wire.encode_published("flood", {"i": -1}))
            if not reader.is_alive():
                break
            time.sleep(0.05)
        reader.join(timeout=25)
        slow_got = len(receive_all(slow))
    finally:
        producer.close()
        slow.close()
        fast.close()
    assert -1 in got, "the fast subscriber stopped receiving: the slow one blocked the publisher"
    assert len([i for i in got if i >= 0]) >= 0.9 * count
    assert slow_got < count / 2, f"the slow subscriber got {slow_got} of {count}: nothing was dropped?"


def receive_all(sock: zmq.Socket) -> list:
    out = []
    while sock.poll(300):
        out.append(sock.recv_multipart())
    return out


def test_remote_worker_takes_work_and_exits_0_on_sigterm(daemon: Daemon) -> None:
    """`textwatch worker --connect tcp://HOST:PORT` joins the pool over tcp; SIGTERM stops it with 0."""
    remote = spawn(WORKER_CLI, "--connect", daemon.endpoints.pool_crops, "--name", "remote-1", "-c", str(daemon.config))
    sub = daemon.subscriber("text.far")
    try:
        receive(sub, has("stats", lambda p: p["process"] == "remote-1"), timeout_s=30)
        for seq in range(6):
            daemon.push.send_multipart(crop_message("Sample Text", "far", seq=seq))
        messages = receive(sub, lambda ms: len([t for t, _ in ms if t == "text.far"]) == 6)
    finally:
        sub.close()
        code = stop_process(remote)
    workers = [p["worker"] for t, p in messages if t == "text.far"]
    assert "remote-1" in workers and all(p["text"] == "Sample Text" for t, p in messages if t == "text.far")
    assert code == 0


def test_worker_cli_arguments() -> None:
    from textwatch.processes.ocr import add_worker_arguments

    parser = argparse.ArgumentParser()
    add_worker_arguments(parser)
    args = parser.parse_args(["--connect", "tcp://10.0.0.2:7000"])
    assert args.connect == "tcp://10.0.0.2:7000" and args.name is None and args.config is None


def _subscribe_args(*argv: str) -> argparse.Namespace:
    from textwatch.tools.subscribe import add_subscribe_arguments

    parser = argparse.ArgumentParser()
    add_subscribe_arguments(parser)
    return parser.parse_args(list(argv))


def test_subscribe_prints_lines_and_json(daemon: Daemon, capsys: pytest.CaptureFixture[str]) -> None:
    from textwatch.tools.subscribe import run_subscribe

    endpoint = daemon.endpoints.publish
    assert run_subscribe(_subscribe_args("--endpoint", endpoint, "--topic", "stats", "--count", "2", "--timeout", "10")) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all(line.startswith("stats ") and "rejected=" in line for line in lines)
    assert run_subscribe(_subscribe_args("--endpoint", endpoint, "--topic", "stats", "--json", "--count", "1")) == 0
    assert json.loads(capsys.readouterr().out)["topic"] == "stats"


def test_subscribe_timeout_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    from textwatch.tools.subscribe import run_subscribe

    args = _subscribe_args("--endpoint", f"tcp://127.0.0.1:{free_port_pair()}", "--timeout", "0.5")
    started = time.monotonic()
    assert run_subscribe(args) == 1
    assert time.monotonic() - started < 5 and "nothing received" in capsys.readouterr().err


def test_frame_notice_parsing_is_strict() -> None:
    notice = wire.frame_notice_from_dict({"camera": "cam", "seq": 3, "ts": 1.5, "regions": 2, "sent": 1, "v": 1})
    assert notice == FrameNotice("cam", 3, 1.5, 2, 1)
    for bad in ({"camera": "cam", "seq": 3, "ts": 1.5, "regions": 1}, {"camera": "cam", "seq": 3, "ts": 1.5, "regions": 0, "sent": 0},
                {"camera": "cam", "seq": 3, "ts": 1.5, "regions": 1, "sent": 2},
                {"camera": "cam", "seq": "3", "ts": 1.5, "regions": 1, "sent": 1}):
        with pytest.raises(wire.WireError):
            wire.frame_notice_from_dict(bad)
