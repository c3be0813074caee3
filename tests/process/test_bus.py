"""The bus with real processes: a publisher and a worker on real sockets, the test playing detect.

Every receive has a timeout. The processes are real subprocesses on ipc sockets
in a temporary folder and tcp loopback on random free ports; they get a real
SIGTERM at the end and must exit 0. The wire format, endpoints and the frame
aggregator on their own are in unit/ (test_wire, test_endpoints, test_aggregator).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
import threading
import time

import pytest
import zmq

from support.cli import process_command
from support.daemon import Daemon
from support.messages import crop_message, text_result
from support.ports import free_port, free_port_pair
from textwatch import bus, wire
from textwatch.tools.subscribe import format_line

RECV_TIMEOUT_S = 10.0


# ---------------------------------------------------------------- helpers


def wait_subscribed(producer: zmq.Socket, prefix: bytes, timeout_s: float = RECV_TIMEOUT_S) -> None:
    """Wait until the publisher's subscription to `prefix` has reached `producer` (an XPUB)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if producer.poll(100) and producer.recv() == b"\x01" + prefix:
            return
    pytest.fail(f"subscription to {prefix!r} never reached the producer")


def has(topic: str, pred=lambda p: True):
    """For Subscriber.collect: a message on `topic` whose payload satisfies `pred` has arrived."""
    return lambda messages: any(t == topic and pred(p) for t, p in messages)


# ---------------------------------------------------------------- real processes

def worker_cli(*args: str) -> list[str]:
    """The real `textwatch worker` console script."""
    return [str(Path(sys.executable).with_name("textwatch")), "worker", *args]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory):
    """A publisher and a worker (support.daemon.Daemon); the test plays detect through `daemon.push`."""
    folder = tmp_path_factory.mktemp("bus")
    pool, publish = free_port_pair(), free_port_pair()
    config = folder / "textwatch.toml"
    config.write_text(
        "[pipeline]\nframe_timeout_s = 0.6\nstats_interval_s = 0.3\nworkers = 1\n[metrics]\nenabled = false\n"
        f'[bus]\nruntime_dir = "{folder / "run"}"\npublish = "tcp://127.0.0.1:{publish}"\n'
        f'pool = "tcp://127.0.0.1:{pool}"\npool_plaintext_loopback = true\npublish_hwm = 200\n'
    )
    processes = {
        "publisher": process_command("publisher", str(config)),
        "worker": process_command("ocr", str(config), "--name", "local-1"),
    }
    with Daemon(config, processes) as state:
        state.play_detect()
        sub = state.subscriber("stats")
        sub.collect(has("stats", lambda p: p["process"] == "local-1"), timeout=30)
        sub.close()
        yield state
        codes = state.terminate_all(timeout=10)
    assert codes == {"worker": 0, "publisher": 0}


def test_text_and_complete_frame_arrive_through_the_publisher(daemon: Daemon) -> None:
    sub = daemon.subscriber("text.doc", "frame.doc")
    try:
        daemon.push.send_multipart(crop_message("Align Text", "doc", seq=5, region=1, regions=2))
        daemon.push.send_multipart(crop_message("Sample Text", "doc", seq=5, region=0, regions=2))
        messages = sub.collect(has("frame.doc"))
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
        [frame] = [p for t, p in sub.collect(has("frame.gate")) if t == "frame.gate"]
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
        messages = sub.collect(lambda ms: has("text.bad")(ms) and has(
            "stats", lambda p: p["process"] == "local-1" and p["rejected"] >= 2)(ms))
    finally:
        sub.close()
    assert [p["text"] for t, p in messages if t == "text.bad"] == ["Sample Text"]


def test_malformed_results_are_rejected_by_the_publisher(daemon: Daemon) -> None:
    producer = bus.result_publisher(daemon.ctx, daemon.endpoints.results)
    sub = daemon.subscriber("text.forged", "junk")
    try:
        wait_subscribed(producer, b"")
        producer.send_multipart([b"text.forged", b'{"v":1,"camera":"forged"}'])
        producer.send_multipart([b"junk", b"\xff\xfe"])
        producer.send_multipart(wire.encode_published(wire.TOPIC_TEXT, text_result(camera="other"), "forged"))
        producer.send_multipart(wire.encode_published(wire.TOPIC_TEXT, text_result(camera="forged", region=5), "forged"))
        messages = sub.collect(has("stats", lambda p: p["process"] == "publisher" and p["rejected"] >= 4))
    finally:
        producer.close()
        sub.close()
    assert not [t for t, _ in messages if t != "stats"]


def test_slow_subscriber_does_not_block_the_publisher(daemon: Daemon) -> None:
    """A subscriber that never reads loses messages; a fast one keeps getting them all the while."""
    count, payload = 2000, "x" * 16_000
    slow = daemon.subscriber("event.flood", rcvhwm=10)
    fast = daemon.subscriber("event.flood")
    producer = bus.result_publisher(daemon.ctx, daemon.endpoints.results)
    producer.setsockopt(zmq.SNDHWM, 0)  # the test's producer must not drop: we count what arrives
    try:
        wait_subscribed(producer, b"")
        got: list[int] = []

        def read_fast() -> None:
            end = time.monotonic() + 20
            while time.monotonic() < end:
                if (message := fast.receive(0.2)) is not None:
                    name, body = message
                    if name == "event.flood":
                        got.append(body["i"])
                        if body["i"] == -1:
                            return

        reader = threading.Thread(target=read_fast)
        reader.start()
        for i in range(count):
            producer.send_multipart(wire.encode_published(wire.TOPIC_EVENT, {"i": i, "pad": payload}, "flood"))
            if i % 50 == 49:
                time.sleep(0.01)  # pace like a real producer; the proxy is not the thing under test
        for _ in range(50):  # the end marker, repeated: it must get through while `slow` is still full
            producer.send_multipart(wire.encode_published(wire.TOPIC_EVENT, {"i": -1}, "flood"))
            if not reader.is_alive():
                break
            time.sleep(0.05)  # paces the repeats of the marker; the reader's exit is the condition
        reader.join(timeout=25)
        slow_got = len(slow.drain())
    finally:
        producer.close()
        slow.close()
        fast.close()
    assert -1 in got, "the fast subscriber stopped receiving: the slow one blocked the publisher"
    assert len([i for i in got if i >= 0]) >= 0.9 * count
    assert slow_got < count / 2, f"the slow subscriber got {slow_got} of {count}: nothing was dropped?"


def test_remote_worker_takes_work_and_exits_0_on_sigterm(daemon: Daemon) -> None:
    """`textwatch worker --connect tcp://HOST:PORT` joins the pool over tcp; SIGTERM stops it with 0."""
    remote = Daemon(daemon.config, {"remote-1": worker_cli(
        "--connect", daemon.endpoints.pool_crops, "--name", "remote-1", "-c", str(daemon.config))})
    sub = daemon.subscriber("text.far")
    detect = bus.result_publisher(daemon.ctx, daemon.endpoints.results)  # the test plays detect's notices too
    try:
        wait_subscribed(detect, b"")
        sub.collect(has("stats", lambda p: p["process"] == "remote-1"), timeout=30)
        for seq in range(6):
            daemon.push.send_multipart(crop_message("Sample Text", "far", seq=seq))
            notice = wire.FrameNotice(camera="far", seq=seq, ts=time.time(), regions=1, sent=1)
            detect.send_multipart(wire.encode_published(wire.TOPIC_FRAME_NOTICE, notice, "far"))
        messages = sub.collect(lambda ms: len([t for t, _ in ms if t == "text.far"]) == 6)
    finally:
        sub.close()
        detect.close()
        code = remote.terminate(timeout=10)
        remote.stop()
    workers = [p["worker"] for t, p in messages if t == "text.far"]
    assert "remote-1" in workers and all(p["text"] == "Sample Text" for t, p in messages if t == "text.far")
    assert code == 0


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

    args = _subscribe_args("--endpoint", f"tcp://127.0.0.1:{free_port()}", "--timeout", "0.5")
    started = time.monotonic()
    assert run_subscribe(args) == 1
    assert time.monotonic() - started < 5 and "nothing received" in capsys.readouterr().err
