"""Faults (issue 6) at one real `textwatch worker`: hostile crops are counted as rejected, never a crash.

The hostile inputs are seeded random bytes and mutated valid messages, as in
daemon/test_faults.py; TEXTWATCH_FAULT_SEED picks the seed there and here.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from support.ports import free_port_pair
from support.publisher_play import serve_until_worker_joins
from textwatch import wire
from textwatch.tools.samples import line_crop

SEED = int(os.environ.get("TEXTWATCH_FAULT_SEED", "6"))


def hostile_crops(rng: random.Random, count: int) -> list[list[bytes]]:
    """Crop messages that must all be rejected: random frames, broken headers, lying shapes."""
    good_header = json.loads(wire.encode_crop(
        wire.CropHeader(camera="cam1", seq=1, ts=time.time(), region=0, regions=1, box=(0, 0, 8, 8),
                        confidence=0.5, text_height=8.0, shape=(8, 8, 1)),
        np.zeros((8, 8, 1), np.uint8),
    )[0])
    lies = [("shape", [8, 8, 3]), ("shape", [100_000, 100_000, 3]), ("shape", [-8, -8, 1]), ("shape", [8, 8, 2]),
            ("shape", "8x8"), ("dtype", "float64"), ("v", 99), ("region", 3), ("seq", "one"), ("box", [0, 0])]
    messages = []
    for index in range(count):
        kind = index % 3
        if kind == 0:
            messages.append([rng.randbytes(rng.randint(0, 200)) for _ in range(rng.choice([1, 2, 3]))])
        elif kind == 1:
            key, value = rng.choice(lies)
            messages.append([json.dumps(good_header | {key: value}).encode(), bytes(64)])
        else:
            cut = json.dumps(good_header).encode()
            messages.append([cut[: rng.randint(0, len(cut) - 1)], bytes(64)])
    return messages


def test_hostile_crops_are_rejected_by_a_real_worker_that_keeps_reading(tmp_path: Path) -> None:
    """A worker's PULL only ever connects (to detect's PUSH, or a pool), so a `textwatch worker`
    process is pointed at our own PUSH: garbage crops are counted as rejected, a valid crop
    after them is read, the process never exits."""
    port = free_port_pair()  # our PUSH on PORT, our XSUB on PORT+1
    context = zmq.Context()
    push, xsub = context.socket(zmq.PUSH), context.socket(zmq.XSUB)
    for sock in (push, xsub):
        sock.setsockopt(zmq.LINGER, 0)
    push.setsockopt(zmq.SNDTIMEO, 30_000)
    push.bind(f"tcp://127.0.0.1:{port}")
    xsub.bind(f"tcp://127.0.0.1:{port + 1}")
    xsub.send(b"\x01text.")
    xsub.send(b"\x01stats")
    exe = Path(sys.executable).with_name("textwatch")
    log = open(tmp_path / "worker.log", "w")  # noqa: SIM115 - closed below
    worker = subprocess.Popen([str(exe), "worker", "--connect", f"tcp://127.0.0.1:{port}", "--name", "fuzzed"],
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        hostile = hostile_crops(random.Random(SEED), 150)
        serve_until_worker_joins(push, xsub)
        for message in hostile:
            push.send_multipart(message)
        pixels = line_crop("STILL HERE 9", height=40)
        header = wire.CropHeader(camera="cam1", seq=7, ts=time.time(), region=0, regions=1, box=(0, 0, 1, 1),
                                 confidence=0.5, text_height=40.0, shape=tuple(pixels.shape))
        push.send_multipart(wire.encode_crop(header, pixels))
        result = receive(xsub, "text.", timeout=60)
        assert result["text"] == "STILL HERE 9"
        stats = receive(xsub, "stats", timeout=15)
        assert stats["rejected"] == len(hostile) and stats["crops_read"] == 1, (f"seed {SEED}", stats)
        assert worker.poll() is None
    finally:
        worker.terminate()
        code = worker.wait(timeout=15)
        log.close()
        push.close()
        xsub.close()
        context.term()
    assert code == 0


def receive(sock: zmq.Socket, topic: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sock.poll(100):
            frames = sock.recv_multipart()
            if frames[0].decode(errors="replace").startswith(topic):
                return json.loads(frames[-1])
    raise TimeoutError(f"no {topic} message within {timeout}s")
