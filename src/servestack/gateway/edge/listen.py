"""The gateway's listening socket, bound apart from the server so `up` can claim its port first.

`servestack up` binds it before any engine starts: a busy port is refused at once, not after an
engine began loading. It stays non-inheritable (Python's default): engines are spawned after it
is bound, and uvloop's spawn does not close inherited descriptors, so an inheritable socket would
live on in every engine and keep a killed controller's port accepting connections nobody answers.
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
    return sock
