"""The free-port helpers of tests/support: what they return can really be bound."""

from __future__ import annotations

import socket

import pytest

from support import ports
from support.ports import HOST, free_port, free_port_pair


def bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


def test_free_port_is_bindable() -> None:
    assert bindable(free_port())


def test_free_port_pair_gives_two_bindable_neighbours() -> None:
    for _ in range(20):
        port = free_port_pair()
        assert bindable(port) and bindable(port + 1), port


def test_free_port_pair_never_returns_a_port_whose_neighbour_is_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: the old loop retried exactly when P+1 was free, so it checked nothing.

    `port = free_port(); while port + 1 == free_port(): port = free_port()` only retried when
    the next free port the kernel offered happened to be P+1, never when P+1 was taken. Here
    the first candidates offered are a P whose P+1 a listening socket holds: the old loop
    returns that P; the helper must pass it over."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as neighbour:
        neighbour.bind((HOST, 0))
        neighbour.listen()
        blocked = neighbour.getsockname()[1] - 1  # its P+1 is taken for as long as the test runs
        offered = iter([blocked] * 5)
        kernel_pick = ports.free_port
        monkeypatch.setattr(ports, "free_port", lambda: next(offered, None) or kernel_pick())
        port = free_port_pair()
        assert port != blocked, f"returned {port}, whose neighbour {port + 1} is in use"
        assert bindable(port) and bindable(port + 1), port
