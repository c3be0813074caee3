"""A subscriber on a daemon's publish endpoint, and predicates on what it receives."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import zmq


class Subscriber:
    """A SUB socket on the daemon's publish endpoint; every wait has a deadline."""

    def __init__(self, endpoint: str, topics: tuple[str, ...] = ("",)) -> None:
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.SUB)
        self.socket.setsockopt(zmq.LINGER, 0)
        for topic in topics:
            self.socket.setsockopt_string(zmq.SUBSCRIBE, topic)
        self.socket.connect(endpoint)
        self.seen: list[tuple[str, dict[str, Any]]] = []

    def wait_for(self, predicate: Callable[[str, dict[str, Any]], bool], timeout: float) -> tuple[str, dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if not self.socket.poll(int(left * 1000) + 1):
                continue
            topic, body = self.socket.recv_multipart()
            message = (topic.decode(), json.loads(body))
            self.seen.append(message)
            if predicate(*message):
                return message
        kinds = sorted({t for t, _ in self.seen})
        raise TimeoutError(f"no matching message within {timeout}s; saw {len(self.seen)} messages of {kinds}")

    def close(self) -> None:
        self.socket.close()
        self.context.term()

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def received_within(sock: zmq.Socket, seconds: float) -> list[list[bytes]]:
    """Every message `sock` (any receiving socket) gets within `seconds`: waits the whole time."""
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
