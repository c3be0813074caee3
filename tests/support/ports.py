"""Free TCP ports on 127.0.0.1 for the sockets a test binds or points a daemon at.

A port is only known to be free at the moment it is probed: another process may take it
before the test binds it. The kernel hands out ephemeral ports in a random order, so such a
clash is rare; the helpers never return a port they could not bind themselves.
"""

from __future__ import annotations

import socket

HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port nobody listens on right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def free_port_pair(attempts: int = 100) -> int:
    """A port P with P and P+1 both bindable on 127.0.0.1 right now (both are bound, then released).

    For what binds two neighbouring ports from one setting: the worker pool takes P for
    crops and P+1 for results.
    """
    for _ in range(attempts):
        port = free_port()
        if port >= 65535:
            continue
        first, second = socket.socket(socket.AF_INET, socket.SOCK_STREAM), socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        with first, second:
            try:
                first.bind((HOST, port))
                second.bind((HOST, port + 1))
            except OSError:  # P was taken since free_port() saw it, or P+1 is: try another P
                continue
            return port
    raise RuntimeError(f"no free pair of neighbouring ports on {HOST} in {attempts} tries")
