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
