"""A subscriber on a publish endpoint (a daemon's, or a publisher's), and predicates on what it receives.

One SUB socket per Subscriber, in the process's one ZeroMQ context; messages are
decoded by the wire module (a malformed one fails the test) and kept in `seen`.
Every wait has a deadline.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import zmq

from textwatch import bus, wire

Message = tuple[str, dict[str, Any]]


class Subscriber:
    """A SUB socket on `endpoint` subscribed to `topics` (prefixes; "" is everything).

    `curve` connects as a CURVE client (tcp only, as the daemon's own clients do);
    `rcvhwm` bounds its queue (a subscriber that never reads fills it and then loses messages).
    """

    def __init__(
        self, endpoint: str, topics: tuple[str, ...] = ("",), *, curve: bus.ClientCurve | None = None,
        rcvhwm: int | None = None,
    ) -> None:
        self.socket = zmq.Context.instance().socket(zmq.SUB)
        self.socket.setsockopt(zmq.LINGER, 0)
        if rcvhwm is not None:
            self.socket.setsockopt(zmq.RCVHWM, rcvhwm)
        for topic in topics:
            self.socket.setsockopt_string(zmq.SUBSCRIBE, topic)
        bus.connect(self.socket, endpoint, curve)
        self.seen: list[Message] = []

    def receive(self, timeout: float) -> Message | None:
        """The next message within `timeout` s (also kept in `seen`), or None."""
        if not self.socket.poll(max(1, int(timeout * 1000))):
            return None
        message = wire.decode_published(self.socket.recv_multipart())
        self.seen.append(message)
        return message

    def wait_for(self, predicate: Callable[[str, dict[str, Any]], bool], timeout: float) -> Message:
        """The first message from now on for which `predicate(topic, body)` holds; TimeoutError after `timeout` s."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            message = self.receive(left)
            if message is not None and predicate(*message):
                return message
        kinds = sorted({t for t, _ in self.seen})
        texts = sorted({str(b["text"]) for _, b in self.seen if "text" in b})
        raise TimeoutError(
            f"no matching message within {timeout}s; saw {len(self.seen)} messages of {kinds}, texts {texts}"
        )

    def collect(self, until: Callable[[list[Message]], bool], timeout: float = 10.0) -> list[Message]:
        """The messages received from now on, once `until(messages)` holds; TimeoutError after `timeout` s."""
        messages: list[Message] = []
        deadline = time.monotonic() + timeout
        while not until(messages):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"not there within {timeout}s; got {[t for t, _ in messages][-20:]}")
            if (message := self.receive(min(left, 0.2))) is not None:
                messages.append(message)
        return messages

    def drain(self, quiet_s: float = 0.3) -> list[Message]:
        """What is queued: messages until none arrives for `quiet_s`."""
        messages = []
        while (message := self.receive(quiet_s)) is not None:
            messages.append(message)
        return messages

    def close(self) -> None:
        self.socket.close()

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def received_within(sock: zmq.Socket, seconds: float) -> list[list[bytes]]:
    """Every message `sock` (any receiving socket) gets within `seconds`, raw: waits the whole time."""
    got = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if sock.poll(int(left * 1000) + 1):
            got.append(sock.recv_multipart())
    return got


def text_is(expected: str) -> Callable[[str, dict[str, Any]], bool]:
    return lambda topic, body: topic.startswith("text.") and body.get("text") == expected


def event_is(kind: str) -> Callable[[str, dict[str, Any]], bool]:
    return lambda topic, body: topic.startswith("event.") and body.get("event") == kind
