"""Accepting the gateway's connections: as many as its open-files limit lets it relay, and a 503 for more.

The gateway accepts on its listening socket itself and hands each connection to uvicorn's protocol
(`connect_accepted_socket`) rather than letting uvloop's server accept: out of descriptors, libuv
accepts every pending connection on a spare descriptor and closes it at once, so clients see resets
and nothing is logged. Here a connection past the gateway's capacity (the streams its open-files limit
holds, two descriptors each: open_files.py) is answered with a 503 that names the limit, once its
request is in (closing a connection with its request unread, or still to come, would reset it and
the client could lose the answer). Should the process run out anyway (descriptors taken by other
work), accepting pauses briefly and the connections wait in the listen backlog.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
from collections.abc import Callable

import orjson

from servestack.asgi import openai_error
from servestack.driven import Driven
from servestack.errors import OpenFilesExhausted
from servestack.gateway.edge.http_connection import HttpConnection
from servestack.open_files import ShortageLog, exhausted, shortage

log = logging.getLogger("servestack.gateway")

RETRY_ACCEPT_SECONDS = 0.1  # the pause in accepting when no descriptor can be had
REQUEST_WAIT_SECONDS = 1.0  # how long a refused connection's request is waited for
PEEK_BYTES = 64 * 1024  # read of a refused connection's request: enough to see its path, and not reset it unread
TRANSIENT = frozenset({errno.ECONNABORTED, errno.EPROTO, errno.EPERM, errno.ENOBUFS, errno.ENOMEM})


class Listener:
    """Accepts connections on `sock` for `protocol_factory`, at most `capacity` open at once; uvicorn's
    `Server` treats it as one of its servers."""

    def __init__(
        self, sock: socket.socket, protocol_factory: Callable[[], HttpConnection], *, backlog: int, capacity: int
    ) -> None:
        self._sock = sock
        self._factory = protocol_factory
        self._capacity = capacity
        self.held = 0  # connections accepted and not yet closed
        self._loop = asyncio.get_running_loop()
        self._refusals = ShortageLog(log, "connections refused with 503")
        self._stalls = ShortageLog(log, "pauses in accepting")
        self._refusing: set[asyncio.Task[None]] = set()
        self._resume_later: asyncio.TimerHandle | None = None
        self._reading = False
        sock.listen(backlog)
        sock.setblocking(False)
        self._address: tuple[str, int] = sock.getsockname()[:2]
        self._resume()

    def close(self) -> None:
        """Stop accepting (the socket is its owner's to close)."""
        self._pause()
        if self._resume_later is not None:
            self._resume_later.cancel()
        for task in self._refusing:
            task.cancel()

    async def wait_closed(self) -> None:
        return None

    def _accept(self) -> None:
        loop, factory, family = self._loop, self._factory, self._sock.family
        while True:
            try:
                # `socket.accept()` less its two enum conversions (~1 µs a connection)
                fd, client = self._sock._accept()  # type: ignore[attr-defined]
                conn = socket.socket(family, socket.SOCK_STREAM, 0, fileno=fd)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exhausted(exc):
                    self._stalls.note(shortage(exc))
                elif exc.errno in TRANSIENT:
                    continue
                else:
                    log.error("the gateway cannot accept connections: %s", exc)
                self._pause_briefly()
                return
            if self.held >= self._capacity:
                self._refuse(conn)
                continue
            self.held += 1
            protocol = factory()
            protocol.on_lost = self._lost
            protocol.addresses = (self._address, client[:2])
            Driven(loop.connect_accepted_socket(protocol.itself, conn), protocol.attached)  # no Task: driven.py

    def _lost(self) -> None:
        self.held -= 1

    def _refuse(self, conn: socket.socket) -> None:
        error = shortage()
        self._refusals.note(error)
        task = self._loop.create_task(_answer_when_asked(self._loop, conn, error))
        self._refusing.add(task)
        task.add_done_callback(self._refusing.discard)

    def _resume(self) -> None:
        if not self._reading:
            self._loop.add_reader(self._sock.fileno(), self._accept)
            self._reading = True

    def _pause(self) -> None:
        if self._reading:
            self._loop.remove_reader(self._sock.fileno())
            self._reading = False

    def _pause_briefly(self) -> None:
        self._pause()
        self._resume_later = self._loop.call_later(RETRY_ACCEPT_SECONDS, self._resume)


async def _answer_when_asked(loop: asyncio.AbstractEventLoop, conn: socket.socket, error: OpenFilesExhausted) -> None:
    """Answer `conn` with `error` once its request is in (or a moment has passed), in Ollama's shape on /api/*."""
    with conn:
        conn.setblocking(False)
        request = b""
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(REQUEST_WAIT_SECONDS):
                request = await loop.sock_recv(conn, PEEK_BYTES)
        path = request.split(b" ", 2)[1] if request.count(b" ") >= 2 else b""
        body = orjson.dumps({"error": error.message} if path.startswith(b"/api/") else openai_error(error))
        head = (
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n"
            b"connection: close\r\ncontent-length: %d\r\n\r\n" % len(body)
        )
        with contextlib.suppress(OSError):
            conn.send(head + body)
