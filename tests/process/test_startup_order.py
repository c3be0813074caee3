"""Start-up order: a producer that starts before the publisher listens loses nothing it reads.

The supervisor starts the publisher first, but under load a worker can be up and
connecting before the publisher has bound its results socket; ZeroMQ then backs off
its reconnects, and what the worker publishes meanwhile is dropped without a trace.
Here the order is forced: a real worker runs alone for longer than the old 5 s
wait, then the real publisher starts.
"""

from __future__ import annotations

import time
from pathlib import Path

import zmq

from support.cli import process_command
from support.daemon import Daemon
from support.messages import crop_message
from support.subscriber import text_is
from support.wait import wait_until
from textwatch import bus


def test_a_worker_waits_for_the_publisher_before_taking_a_crop_and_its_first_result_arrives(tmp_path: Path) -> None:
    """Regression (session 8): the worker's wait for the publisher ended after 5 s with "taking crops
    anyway", while its results link could still be in reconnect backoff (up to 5 s), so the first line
    of a file could be read and published into nothing."""
    config = tmp_path / "textwatch.toml"
    config.write_text(
        "[pipeline]\nworkers = 1\nstats_interval_s = 0.5\n[metrics]\nenabled = false\n[history]\nenabled = false\n"
        f'[bus]\nruntime_dir = "{tmp_path / "run"}"\npublish = "ipc://{tmp_path / "run" / "out.ipc"}"\n'
    )
    with Daemon(config, {"worker": process_command("ocr", str(config), "--name", "early-1")}) as daemon:
        push = daemon.play_detect()
        push.setsockopt(zmq.SNDTIMEO, 30_000)
        wait_until(lambda: "publisher_not_reachable" in daemon.log_text("worker"), timeout=60,
                   message=lambda: daemon.log_text("worker")[-2000:])
        assert not push.poll(0, zmq.POLLOUT), "the worker joined the pool before the publisher listened"

        daemon.start("publisher", process_command("publisher", str(config)))
        with daemon.subscriber("text.") as sub:
            push.send_multipart(crop_message("EARLY LINE", "cam1", seq=1))
            _, body = sub.wait_for(text_is("EARLY LINE"), timeout=30)
        assert body["worker"] == "early-1"
        assert daemon.terminate_all(timeout=15) == {"publisher": 0, "worker": 0}


def test_a_local_subscriber_joins_a_late_publisher_within_a_fraction_of_a_second(tmp_path: Path) -> None:
    """history's and the MQTT bridge's SUB on the publisher's ipc endpoint: ZeroMQ backs its reconnects
    off up to bus.RECONNECT_IVL_MAX_MS (5 s), which after a 3 s wait for the publisher meant joining
    up to 3 s after its bind and missing what it published meanwhile. On ipc the cap is 0.2 s."""
    endpoint = f"ipc://{tmp_path / 'late.ipc'}"
    ctx = zmq.Context.instance()
    sub = bus.subscriber(ctx, endpoint, ["late"], rcvhwm=100)
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    try:
        time.sleep(3.2)  # on purpose: nobody has bound yet, the subscriber's backoff grows (0.1, 0.2, 0.4 ... s)
        pub.bind(endpoint)
        bound = time.monotonic()
        while not sub.poll(20):
            pub.send_multipart([b"late", b"x"])
            assert time.monotonic() - bound < 10, "the subscriber never joined"
        joined = time.monotonic() - bound
    finally:
        sub.close()
        pub.close()
    assert joined < 1.5, f"joined {joined:.2f} s after the bind"
