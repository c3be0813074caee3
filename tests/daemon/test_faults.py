"""Faults (issue 6): real daemons under killed servers, killed children, bad files and hostile bytes.

Every test runs `textwatch run` as real processes and bounds every wait (one
`textwatch worker` fed hostile crops is in process/test_worker_faults.py).
Repetitions default to what the issue asks where this 2-core machine affords
it, and TEXTWATCH_FAULT_REPEATS overrides them all (e.g.
TEXTWATCH_FAULT_REPEATS=20 for the issue's full RTSP count).

"No crash" is checked by process identity: every child keeps the pid it had
(no new `child_started` in the supervisor's log) and the supervisor still runs.
Hostile inputs are seeded random bytes and mutated valid messages (hypothesis
is not installed here); a failing seed is printed in the assertion.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import statistics
import time
from pathlib import Path

import pytest
import zmq

from support.clips import write_line_clip
from support.daemon import Daemon, daemon_config, publish_endpoint
from support.rtsp import RtspServer, server_available
from support.subscriber import Subscriber, event_is, text_is
from support.wait import wait_until
from textwatch import wire
from textwatch.capture import BACKOFF_JITTER
from textwatch.errors import ExitCode

pytestmark = pytest.mark.slow
TEXT = "FAULT 17"
SEED = int(os.environ.get("TEXTWATCH_FAULT_SEED", "6"))


def repeats(default: int) -> int:
    """How many fault cycles: TEXTWATCH_FAULT_REPEATS if set, else `default`."""
    return int(os.environ.get("TEXTWATCH_FAULT_REPEATS", default))


def tracking_off(config: Path) -> Path:
    """Every frame's crop is read (no skipping of unchanged regions): a steady load on the workers."""
    config.write_text(config.read_text().replace("[detector]", "[tracking]\nenabled = false\n\n[detector]"))
    return config


def after(ts: float, expected: str):
    return lambda topic, body: text_is(expected)(topic, body) and body["ts"] > ts


def stats_of(process: str, since: float = 0.0):
    """Stats of `process` published after `since` (UNIX s): older ones may still sit in the SUB queue."""
    return lambda topic, body: topic == "stats" and body.get("process") == process and body["ts"] > since


def children_unchanged(daemon: Daemon, before: dict[str, list[int]]) -> None:
    """No child was restarted since `before`, every one of them still runs, and so does the supervisor."""
    assert daemon.process.poll() is None, daemon.log_text()[-3000:]
    for prefix, pids in before.items():
        assert daemon.child_pids(prefix) == pids, f"{prefix} restarted: {daemon.log_text()[-3000:]}"
        for pid in pids:
            os.kill(pid, 0)  # raises ProcessLookupError if it died


def pids(daemon: Daemon) -> dict[str, list[int]]:
    return {prefix: daemon.child_pids(prefix) for prefix in ("publisher", "ocr-", "detect-")}


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    return write_line_clip(tmp_path / "line.mp4", [TEXT], frames_each=20)


# ---------------------------------------------------------------- sources that die


def test_rtsp_server_killed_and_restarted_repeatedly(tmp_path: Path, clip: Path) -> None:
    """Each cycle: SIGKILL the server, source_down, start it again, source_up within
    reconnect_max_s (+ its jitter) + 2 s of the server listening; 20 cycles, as the
    issue asks (~4.5 s a cycle here)."""
    reason = server_available()
    if reason:
        pytest.skip(reason)
    stall_s, reconnect_max_s = 1.0, 1.0
    allowed = reconnect_max_s * (1 + BACKOFF_JITTER) + 2.0
    with RtspServer(clip) as server:
        config = daemon_config(
            tmp_path, server.url, stall_s=stall_s, reconnect_min_s=0.2, reconnect_max_s=reconnect_max_s,
            open_timeout_s=2.0, read_timeout_s=2.0, max_fps=4.0,
        )
        with Subscriber(publish_endpoint(config), topics=("event.", "text.")) as sub, Daemon(config) as daemon:
            sub.wait_for(text_is(TEXT), timeout=60)
            before = pids(daemon)
            recoveries = []
            for cycle in range(repeats(20)):
                assert server.process is not None
                server.process.kill()
                server.stop()
                sub.wait_for(event_is("source_down"), timeout=stall_s + 10)
                server.start()
                listening = time.monotonic()
                sub.wait_for(event_is("source_up"), timeout=allowed + 5)
                recoveries.append(round(time.monotonic() - listening, 2))
            sub.wait_for(after(time.time(), TEXT), timeout=30)
            children_unchanged(daemon, before)
            print(f"\nRTSP server killed and restarted {len(recoveries)} times: source_up after "
                  f"median {statistics.median(recoveries):.2f} s, max {max(recoveries):.2f} s of it listening")
            assert max(recoveries) <= allowed, f"recovery times {recoveries}, allowed {allowed:.1f} s"
            assert daemon.terminate(timeout=20) == 0


# ---------------------------------------------------------------- children that die


def test_ocr_worker_killed_repeatedly_is_restarted_and_lost_crops_are_accounted_for(tmp_path: Path) -> None:
    """Kill ocr-0 again and again while a 30 s file plays (2 workers): each time it is
    restarted and reads again, ocr-1 never stops, and at the end every crop detect sent
    is either a text result or one of the crops lost with a killed worker.

    Each kill is a hung worker's end: SIGSTOP, 0.5 s in which PUSH still deals it
    crops, then SIGKILL; so every kill certainly loses crops in flight (a bare SIGKILL
    of an idle worker between two 10 ms crops usually loses none). Frames here have
    one region, so a lost crop loses its whole frame; detect's frame notice makes the
    publisher count it (regression: such frames vanished without a count)."""
    clip = write_line_clip(tmp_path / "long.mp4", [TEXT], frames_each=300)
    config = tracking_off(daemon_config(tmp_path, str(clip), workers=2, loop=False, realtime=True, max_fps=10.0))
    # Six, not ten: a cycle (stop, kill, restart, a read by the new worker) takes 2-4 s on a loaded
    # 2-core machine, and ten of them sometimes outlasted the 30 s file (flaky: the file ended first).
    kills = repeats(6)
    with Subscriber(publish_endpoint(config), topics=("text.", "stats")) as sub, Daemon(config) as daemon:
        sub.wait_for(text_is(TEXT), timeout=60)
        for kill in range(kills):
            victim = daemon.child_pids("ocr-0")[-1]
            os.kill(victim, signal.SIGSTOP)
            time.sleep(0.5)  # on purpose: a hung worker that PUSH still deals crops to (see the docstring)
            os.kill(victim, signal.SIGKILL)
            wait_until(lambda: len(daemon.child_pids("ocr-0")) >= kill + 2, 30, 0.1, f"kill {kill}: ocr-0 was not restarted")
            assert len(daemon.child_pids("ocr-0")) == kill + 2, f"kill {kill}: ocr-0 was not restarted"
            restarted = time.time()
            sub.wait_for(lambda t, b: after(restarted, TEXT)(t, b) and b["worker"] == "ocr-0", timeout=30)
        assert len(daemon.child_pids("ocr-1")) == 1, "ocr-1 was restarted too"
        assert daemon.process.wait(timeout=60) == 0, "the file's end must stop the daemon cleanly"
        with pytest.raises(TimeoutError):
            sub.wait_for(lambda t, b: False, timeout=1.0)  # take everything still queued
    texts = sum(topic.startswith("text.") for topic, _ in sub.seen)
    sent = max(b["crops_sent"] for t, b in sub.seen if t == "stats" and b.get("process") == "detect-0")
    lost = sent - texts
    final = [b for t, b in sub.seen if t == "stats" and b.get("process") == "publisher"][-1]
    print(f"crops sent {sent}, results {texts}: {lost} lost in {kills} kills; publisher: {final['frames_lost']} frames lost")
    assert kills <= lost <= kills * 40, f"crops sent {sent}, results {texts}: {lost} lost in {kills} kills"
    # Each lost crop is a lost one-region frame; frames whose crop the full pool refused count too.
    assert final["frames_lost"] >= lost and final["regions_missing"] >= lost, final


def test_detect_process_sigkilled_is_restarted_and_text_resumes(tmp_path: Path, clip: Path) -> None:
    config = daemon_config(tmp_path, str(clip), loop=True, max_fps=5.0)
    with Subscriber(publish_endpoint(config), topics=("text.",)) as sub, Daemon(config) as daemon:
        sub.wait_for(text_is(TEXT), timeout=60)
        workers = daemon.child_pids("ocr-")
        os.kill(daemon.child_pids("detect-")[0], signal.SIGKILL)
        wait_until(lambda: len(daemon.child_pids("detect-")) >= 2, timeout=30, interval=0.1, message="detect-0 was not restarted")
        assert len(daemon.child_pids("detect-")) == 2, "detect-0 was not restarted"
        sub.wait_for(after(time.time(), TEXT), timeout=60)
        assert daemon.child_pids("ocr-") == workers
        assert daemon.terminate(timeout=20) == 0


# ---------------------------------------------------------------- bad files


def corrupt(path: Path, tmp_path: Path) -> Path:
    """Random bytes under a video name."""
    path.write_bytes(random.Random(SEED).randbytes(200_000))
    return path


def truncated_mp4(path: Path, tmp_path: Path) -> Path:
    """The first 40% of a good MP4: mp4v files carry their index (moov) at the end, so nothing decodes."""
    good = write_line_clip(tmp_path / "good.mp4", [TEXT], frames_each=20).read_bytes()
    path.write_bytes(good[: len(good) * 4 // 10])
    return path


@pytest.mark.parametrize("make", [corrupt, truncated_mp4], ids=["corrupt", "truncated-mp4"])
def test_an_undecodable_file_is_refused_at_start_with_one_line(tmp_path: Path, make) -> None:
    """Issue 22: an undecodable file passed `check`, and `run` then reopened it forever (backed
    off, as a source down). `run` checks first, so it now exits 78 naming the camera; a file
    that goes bad while running is still a source down (capture.py, `_file_ended`)."""
    from support.cli import run_cli

    video = make(tmp_path / "bad.mp4", tmp_path)
    config = daemon_config(tmp_path, str(video), loop=True, reconnect_min_s=0.2, reconnect_max_s=1.0)
    result = run_cli("run", "-c", str(config), timeout=120)
    assert result.returncode == ExitCode.CONFIG, result.stderr
    assert result.stderr.count("\n") == 1 and "no frame OpenCV can decode: cam1" in result.stderr, result.stderr


def to_ts(mp4: Path) -> Path:
    ts = mp4.with_suffix(".ts")
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-y", "-i", str(mp4), "-c:v", "mpeg2video", "-q:v", "2", "-f", "mpegts", str(ts)],
        check=True, timeout=60,
    )
    return ts


def needs_ffmpeg() -> None:
    if subprocess.run(["which", "ffmpeg"], capture_output=True).returncode != 0:
        pytest.skip("ffmpeg is not installed")


def test_a_truncated_transport_stream_plays_what_it_has_and_loops(tmp_path: Path) -> None:
    """A stream cut mid-packet (a recording interrupted): the decodable part is read, again and again."""
    needs_ffmpeg()
    ts = to_ts(write_line_clip(tmp_path / "line.mp4", [TEXT], frames_each=40))
    data = ts.read_bytes()
    ts.write_bytes(data[: len(data) // 2 + 77])  # not on a 188-byte packet boundary
    config = daemon_config(tmp_path, str(ts), loop=True, max_fps=10.0)
    with Subscriber(publish_endpoint(config), topics=("text.",)) as sub, Daemon(config) as daemon:
        sub.wait_for(text_is(TEXT), timeout=60)
        before = pids(daemon)
        sub.wait_for(after(time.time() + 1.0, TEXT), timeout=30)
        children_unchanged(daemon, before)
        assert daemon.terminate(timeout=20) == 0


def test_a_resolution_change_mid_stream_keeps_the_pipeline_running(tmp_path: Path) -> None:
    """Two MPEG-TS clips of different sizes (64x130 then 64x362) played back to back as one
    file. OpenCV's FFmpeg backend hands every frame over at the stream's first size (it
    rescales); what we pin is that both halves go through detect and OCR, loop after loop,
    with no restart."""
    needs_ffmpeg()
    small = to_ts(write_line_clip(tmp_path / "small.mp4", ["AB 12"], frames_each=20))
    wide = to_ts(write_line_clip(tmp_path / "wide.mp4", ["SECOND PART 345678"], frames_each=20))
    both = tmp_path / "both.ts"
    both.write_bytes(small.read_bytes() + wide.read_bytes())
    config = tracking_off(daemon_config(tmp_path, str(both), loop=True, realtime=False, max_fps=20.0))
    with Subscriber(publish_endpoint(config), topics=("text.", "stats")) as sub, Daemon(config) as daemon:
        sub.wait_for(text_is("AB 12"), timeout=60)
        before = pids(daemon)
        seqs: set[int] = set()
        sub.wait_for(lambda t, b: t.startswith("text.") and (seqs.add(b["seq"]) or len(seqs) >= 60), timeout=60)
        sub.wait_for(after(time.time(), "AB 12"), timeout=30)  # a later loop reads the first half again
        _, stats = sub.wait_for(stats_of("detect-0", since=time.time()), timeout=10)
        assert stats["cameras"]["cam1"]["frames_read"] >= 60
        children_unchanged(daemon, before)
        assert daemon.terminate(timeout=20) == 0


# ---------------------------------------------------------------- hostile bytes


def hostile_text_results(rng: random.Random, count: int) -> list[list[bytes]]:
    """Messages on the publisher's subscribed topics that must all be rejected."""
    good = json.loads(wire.encode_published(wire.TOPIC_TEXT, {"camera": "cam1"}, "cam1")[1]) | {
        "seq": 1, "ts": time.time(), "region": 0, "regions": 1, "box": [0, 0, 10, 10], "confidence": 0.5,
        "status": "text", "text": "x", "ocr_confidence": 90.0, "worker": "w", "latency_ms": 1.0,
    }
    bad_values = [None, "", -1, 2**70, 1e308, [], {}, "\udcff", True, float("nan")]
    messages = []
    for index in range(count):
        kind = index % 5
        if kind == 0:  # random bytes after a subscribed topic
            messages.append([b"text.cam1", rng.randbytes(rng.randint(0, 300))])
        elif kind == 1:  # wrong number of frames
            messages.append([b"text.cam1"] + [rng.randbytes(rng.randint(0, 50)) for _ in range(rng.choice([0, 2, 3]))])
        elif kind == 2:  # a valid result with one field broken (region always out of range)
            body = dict(good)
            body[rng.choice(list(body))] = rng.choice(bad_values)
            body["region"] = rng.choice([-1, 5, "0", None])
            messages.append([b"text.cam1", json.dumps(body, allow_nan=True).encode()])
        elif kind == 3:  # topic and camera disagree, or a topic that is not UTF-8
            messages.append([rng.choice([b"text.other", b"text.\xff\xfe"]), json.dumps(good).encode()])
        else:  # tracker notices (internal topic) with garbage
            messages.append([b"track-notice.cam1", rng.randbytes(rng.randint(0, 200))])
    return messages


def raw_garbage(address: str, rng: random.Random, connections: int = 5) -> None:
    """Non-ZMTP bytes straight into a listening socket (ipc path or tcp host:port)."""
    for _ in range(connections):
        family = socket.AF_UNIX if address.startswith("/") else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as raw:
            raw.settimeout(2.0)
            if family == socket.AF_UNIX:
                raw.connect(address)
            else:
                host, port = address.rsplit(":", 1)
                raw.connect((host, int(port)))
            try:
                raw.sendall(rng.choice([b"\xff" + rng.randbytes(9), b"GET / HTTP/1.0\r\n\r\n", rng.randbytes(4096)]))
                raw.recv(64)
            except OSError:
                pass  # the peer may drop us mid-write: that is the expected answer


def test_hostile_bytes_on_every_daemon_socket_crash_nothing_and_are_counted(tmp_path: Path, clip: Path) -> None:
    config = daemon_config(tmp_path, str(clip), loop=True, max_fps=5.0)
    runtime = tmp_path / "run"
    endpoint = publish_endpoint(config)
    rng = random.Random(SEED)
    with Subscriber(endpoint, topics=("text.", "stats")) as sub, Daemon(config) as daemon:
        sub.wait_for(text_is(TEXT), timeout=60)
        _, first = sub.wait_for(stats_of("publisher"), timeout=10)
        before = pids(daemon)
        context = zmq.Context()
        try:
            # 1. the publisher's XSUB (results.ipc): producers' messages, malformed
            producer = context.socket(zmq.XPUB)  # an XPUB sees the publisher's subscriptions, so nothing is sent into the void
            producer.setsockopt(zmq.LINGER, 1000)
            producer.connect(f"ipc://{runtime / 'results.ipc'}")
            assert producer.poll(10_000), "the publisher never subscribed"
            hostile = hostile_text_results(rng, 200)
            for message in hostile:
                if message:
                    producer.send_multipart(message)
            # 2. the publisher's XPUB (publish endpoint): garbage subscription and non-subscription frames
            subscriber = context.socket(zmq.XSUB)
            subscriber.setsockopt(zmq.LINGER, 0)
            subscriber.connect(endpoint)
            for _ in range(200):
                subscriber.send(rng.choice([b"\x01", b"\x00", b"\x02", b""]) + rng.randbytes(rng.randint(0, 300)))
            # 3. non-ZMTP bytes into every listening socket: crops.ipc, results.ipc, the publish port
            raw_garbage(str(runtime / "crops.ipc"), rng)
            raw_garbage(str(runtime / "results.ipc"), rng)
            raw_garbage(endpoint.removeprefix("tcp://"), rng)
            time.sleep(1.0)  # lets the queued hostile messages leave before their sockets close (not a count)
            producer.close()
            subscriber.close()
        finally:
            context.term()
        # The stats that count them all (the first one with any rejection may be from halfway through).
        all_counted = lambda t, b: b["rejected"] - first["rejected"] >= len(hostile) * 4 // 5  # noqa: E731
        _, last = sub.wait_for(lambda t, b: stats_of("publisher")(t, b) and all_counted(t, b), timeout=15)
        assert last["rejected"] - first["rejected"] >= len(hostile) * 4 // 5, (f"seed {SEED}", first, last)
        sub.wait_for(after(time.time(), TEXT), timeout=30)
        children_unchanged(daemon, before)
        assert daemon.terminate(timeout=20) == 0
