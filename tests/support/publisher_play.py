"""A test playing the publisher for a lone worker: its XSUB must be served like the real one's.

ZeroMQ attaches a peer that connects to a bound socket, and replays that socket's
subscriptions to it, only when the owning thread next uses the socket (send, recv,
poll). The real publisher polls its XSUB all the time; a test that binds an XSUB,
subscribes and then blocks on a crop send never does, so a worker (which takes crops
only once the publisher's subscription arrived, processes/child.py) and the test
would wait on each other.
"""

from __future__ import annotations

import time

import pytest
import zmq

JOIN_TIMEOUT_S = 60.0


def serve_until_worker_joins(push: zmq.Socket, xsub: zmq.Socket, timeout: float = JOIN_TIMEOUT_S) -> None:
    """Serve `xsub` (its queued messages stay queued) until a worker has connected to `push`."""
    deadline = time.monotonic() + timeout
    while not push.poll(0, zmq.POLLOUT):
        if time.monotonic() > deadline:
            pytest.fail(f"no worker joined the crops PUSH within {timeout} s")
        xsub.poll(50)  # the XSUB's pending attach and subscription replay happen here
