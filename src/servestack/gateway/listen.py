"""The gateway's listening socket, bound apart from the server so `up` can claim its port first.

`servestack up` binds it before any engine starts: a busy port is refused at once, not after an
engine began loading.
"""

from __future__ import annotations

import errno
import socket

from servestack.errors import ServestackError
from servestack.sockets import bound_tcp_socket


def bind_socket(host: str, port: int) -> socket.socket:
    try:
        sock = bound_tcp_socket(host, port)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ServestackError(
                f"the gateway port {host}:{port} is already in use",
                fix="stop what uses it, or pick another port (gateway.port in the stack file, or --port)",
            ) from None
        raise ServestackError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock
