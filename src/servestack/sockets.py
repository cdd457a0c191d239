"""Listening sockets bound by servestack itself (the gateway, the simulator)."""

from __future__ import annotations

import socket


def bound_tcp_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port, not yet listening; OSError (socket closed) when it cannot be."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named explicitly: asyncio sets TCP_NODELAY only on sockets that say so, and without
    # it an answer written in two parts waits out a delayed ACK (~40 ms on the stdlib loop).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock
