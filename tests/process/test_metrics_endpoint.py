"""The metrics HTTP endpoint against real sockets: bounded threads, idle timeouts, loopback only.

Regression (issue 22): prometheus_client's `start_http_server` started a thread per idle
connection and never closed one, and `metrics.listen = "0.0.0.0:..."` was accepted without
a word. The exporter's own `serve()` is used here, so this is the endpoint the publisher runs.
"""

from __future__ import annotations

import socket
import threading
import time
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

from support.ports import HOST, free_port
from support.wait import wait_until
from textwatch import metrics
from textwatch.config import Settings

IDLE_TIMEOUT_S = 1.5
HANDLERS = 3
IDLE_CONNECTIONS = 50


def endpoint_settings(**overrides: object) -> Settings:
    section = {"listen": f"{HOST}:{free_port()}", "idle_timeout_s": IDLE_TIMEOUT_S, "handler_threads": HANDLERS}
    return Settings.model_validate({"metrics": {**section, **overrides}})


@pytest.fixture
def serving() -> Iterator[metrics.Exporter]:
    exporter = metrics.Exporter(endpoint_settings(), CollectorRegistry())
    exporter.serve()
    yield exporter
    exporter.close()


def scrape(exporter: metrics.Exporter, timeout_s: float = 3.0) -> str:
    host, port = exporter.settings.address()
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=timeout_s) as response:
        assert response.status == 200
        return response.read().decode()


def dropped(exporter: metrics.Exporter, reason: str) -> float:
    return exporter.registry.get_sample_value("textwatch_metrics_connections_dropped_total", {"reason": reason}) or 0.0


def closed_by_peer(connection: socket.socket) -> bool:
    """True once the server has closed `connection` (a read gives EOF or a reset)."""
    connection.setblocking(False)
    try:
        return connection.recv(1) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True


@pytest.mark.timeout(30)
def test_idle_connections_hold_no_threads_and_are_closed_after_the_timeout(serving: metrics.Exporter) -> None:
    threads_before = threading.active_count()
    host, port = serving.settings.address()
    idle = [socket.create_connection((host, port), timeout=5) for _ in range(IDLE_CONNECTIONS)]
    # a slow client too: half a request line, then nothing (its handler's socket timeout ends it)
    slow = socket.create_connection((host, port), timeout=5)
    slow.sendall(b"GET /metr")
    try:
        held_at = time.monotonic()
        started = time.monotonic()
        body = scrape(serving)  # answered while all of them are held
        answer_s = time.monotonic() - started
        threads_held = threading.active_count()
        assert "textwatch_frames_read" in body
        assert threads_held <= threads_before, f"threads grew from {threads_before} to {threads_held}"
        assert answer_s < 2.0
        wait_until(lambda: all(closed_by_peer(c) for c in idle), timeout=IDLE_TIMEOUT_S + 5,
                   message=lambda: f"{sum(not closed_by_peer(c) for c in idle)} idle connections still open")
        closed_after_s = time.monotonic() - held_at
        wait_until(lambda: closed_by_peer(slow), timeout=IDLE_TIMEOUT_S + 5, message="the half request is still open")
        print(f"\n{IDLE_CONNECTIONS} idle + 1 half-request connections: threads {threads_before} -> {threads_held}; "
              f"/metrics answered in {answer_s * 1000:.0f} ms while held; idle ones closed {closed_after_s:.2f} s after "
              f"they connected (idle_timeout_s {IDLE_TIMEOUT_S})")
    finally:
        for connection in (*idle, slow):
            connection.close()
    assert closed_after_s >= IDLE_TIMEOUT_S * 0.9
    wait_until(lambda: dropped(serving, "idle") >= IDLE_CONNECTIONS + 1, timeout=5,
               message=lambda: f"idle drops counted: {dropped(serving, 'idle')}")
    assert "textwatch_frames_read" in scrape(serving)  # and it still answers afterwards


def test_threads_are_made_once_at_start(serving: metrics.Exporter) -> None:
    """The loop thread and `handler_threads` handlers, named, none more per request."""
    names = sorted(t.name for t in threading.enumerate() if t.name.startswith("metrics-http"))
    assert names == ["metrics-http", *(f"metrics-http-{n}" for n in range(HANDLERS))]
    for _ in range(10):
        scrape(serving)
    assert sorted(t.name for t in threading.enumerate() if t.name.startswith("metrics-http")) == names


@pytest.mark.timeout(20)
def test_connections_beyond_the_limit_are_closed_at_once_and_counted() -> None:
    exporter = metrics.Exporter(endpoint_settings(max_connections=5, idle_timeout_s=10.0), CollectorRegistry())
    exporter.serve()
    host, port = exporter.settings.address()
    held = [socket.create_connection((host, port), timeout=5) for _ in range(5)]
    try:
        wait_until(lambda: len(exporter._server._open) == 5, timeout=5)
        extra = socket.create_connection((host, port), timeout=5)
        wait_until(lambda: closed_by_peer(extra), timeout=3, message="a connection beyond max_connections stayed open")
        extra.close()
        assert dropped(exporter, "full") == 1
    finally:
        for connection in held:
            connection.close()
    wait_until(lambda: len(exporter._server._open) < 5, timeout=5)
    exporter.close()


def test_close_ends_its_threads_and_frees_the_port(serving: metrics.Exporter) -> None:
    host, port = serving.settings.address()
    busy = socket.create_connection((host, port), timeout=5)
    serving.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("metrics-http")]
    busy.close()
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))


@pytest.mark.parametrize("listen", ["0.0.0.0:9108", "[::]:9108", "192.0.2.10:9108", "metrics.example:9108"])
def test_beyond_loopback_needs_allow_remote(listen: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="beyond loopback: metrics have no authentication"):
        Settings.model_validate({"metrics": {"listen": listen}})
    assert Settings.model_validate({"metrics": {"listen": listen, "allow_remote": True}}).metrics.allow_remote


@pytest.mark.parametrize("listen", ["127.0.0.1:9108", "localhost:9108", "[::1]:9108", "127.0.0.2:9108"])
def test_loopback_needs_nothing(listen: str) -> None:
    assert Settings.model_validate({"metrics": {"listen": listen}}).metrics.listen == listen
