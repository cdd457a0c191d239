"""The gateway's listening socket, bound apart from the server so `up` can claim its port first.

`servestack up` binds it before any engine starts: a busy port is refused at once, not after an
engine began loading.
"""

from __future__ import annotations

import errno
import socket

from servestack.errors import ServestackError


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named explicitly: asyncio only sets TCP_NODELAY on sockets that say so, and without
    # it small responses wait out delayed ACKs (~40 ms each on the stdlib loop).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ServestackError(
                f"the gateway port {host}:{port} is already in use",
                fix="stop what uses it, or pick another port (gateway.port in the stack file, or --port)",
            ) from None
        raise ServestackError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock
