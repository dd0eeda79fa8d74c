"""Loopback ports for servers a test starts."""

from __future__ import annotations

import socket

ATTEMPTS = 50


def free_port(udp_too: bool = False) -> int:
    """A loopback TCP port nobody listens on right now; with ``udp_too``, one whose UDP
    port is free as well (for servers that listen on both, like a TURN server)."""
    for _ in range(ATTEMPTS):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
            if not udp_too:
                return port
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free loopback port")
