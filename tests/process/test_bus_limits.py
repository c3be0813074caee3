"""Every receiving socket bounds the message it accepts (ZMQ_MAXMSGSIZE), before allocating it."""

from __future__ import annotations

from pathlib import Path

import zmq

from textwatch import bus
from textwatch.config import Settings


def test_the_publisher_refuses_an_oversized_result_and_keeps_serving(tmp_path: Path) -> None:
    """Regression (hostile input on its own bus): nothing bounded what a producer could send the
    publisher's results socket; now a message over bus.MAX_RESULT_BYTES closes that producer's
    connection in libzmq, and other producers' results still arrive."""
    settings = Settings.model_validate({"bus": {"runtime_dir": str(tmp_path / "run"), "publish": "tcp://127.0.0.1:0"}})
    endpoints = bus.Endpoints.from_settings(settings)
    ctx = zmq.Context()
    proxy = bus.publisher_proxy(ctx, endpoints, settings)
    proxy.xsub.send(b"\x01text.")  # the publisher's own subscription (an empty one is not replayed to late peers)
    hostile, honest = bus.result_publisher(ctx, endpoints.results), bus.result_publisher(ctx, endpoints.results)
    try:
        # A socket processes its peers' connections when its owner uses it: the publisher polls its
        # XSUB all the time, here the test does, until both producers have heard the subscription.
        pending = [hostile, honest]
        for _ in range(100):
            proxy.xsub.poll(50)
            pending = [sock for sock in pending if not bus.wait_for_subscriber(sock, 0.05)]
            if not pending:
                break
        assert not pending, "the producers never heard the publisher's subscription"
        hostile.send_multipart([b"text.cam", b"x" * (bus.MAX_RESULT_BYTES + 1)])
        honest.send_multipart([b"text.cam", b"{}"])
        received = []
        while proxy.xsub.poll(2000):
            received.append(proxy.xsub.recv_multipart())
        assert received == [[b"text.cam", b"{}"]]
    finally:
        for sock in (hostile, honest):
            sock.close()
        proxy.close()
        ctx.term()
