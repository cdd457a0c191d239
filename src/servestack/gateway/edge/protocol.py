"""uvicorn's httptools protocol with a cap on the request head, requests that end with their
connection, deadlines for reading a request, and one write per response.

Head cap:
uvicorn puts no bound on a request's line and headers: 100 MiB of headers on one connection were
read into memory (and the process did not give it back). Here the bytes from a request's first byte
to the end of its headers are counted as they arrive; past `max_head_bytes` the parser is fed no
more, the client gets 431, and the connection is closed a little later (`LINGER_SECONDS`) while what
the client still sends is read and dropped: closing at once, with its data unread, would reset the
connection and could discard the 431 before the client read it.

Requests end with their connection:
uvicorn tells an app that its client left only through `receive()`, which an app waiting on an
engine is not reading. The protocol cancels the connection's running request instead (the task's
cancel message is `CLIENT_GONE`), so whatever the request holds — an engine request, an in-flight
count, a key's concurrency slot, a queue turn — is released at once, with no watcher task per request.
The app names its task in the request's scope (`TASK_SCOPE`): uvicorn's own task set is the whole
server's, not the connection's.

Deadlines (slow-client protection):
uvicorn closes idle keep-alive connections but puts no bound on how long a client may take to
send a request once it started (or to send anything on a new connection). Here each connection
notes when its current read phase must end — headers from the first byte (or from accept), the
body from the end of the headers — and one sweeper task per server closes connections past their
deadline a few times per timeout. Per request that is two float stores: no timer is armed and
cancelled for every request.

One write: uvicorn writes a response's head and its body separately, two send() calls where one
would do; on loopback each costs ~20 µs of the gateway's ~160 µs per request. The connection's
transport is corked for the rest of the event-loop tick after a write: what else is written in
that tick (the body after the head) goes out with it. A stream's later chunks arrive in later
ticks and are sent as they come.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import weakref
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from servestack.asgi import openai_error
from servestack.errors import HeadersTooLarge

CLIENT_GONE = "servestack: the client disconnected"  # the cancel message of a request whose client left
TASK_SCOPE = "servestack.task"  # where the app leaves the task that serves the request, in its ASGI scope
DEFAULT_MAX_HEAD_BYTES = 64 * 1024
LINGER_SECONDS = 2.0


class Deadlines:
    """The read timeouts of one server, and the sweeper that enforces them."""

    def __init__(self, headers_timeout: float, body_timeout: float, max_head_bytes: int = DEFAULT_MAX_HEAD_BYTES):
        self.max_head_bytes = max_head_bytes
        self.headers_timeout = headers_timeout
        self.body_timeout = body_timeout
        self.sweep_every = min(1.0, max(0.02, min(headers_timeout, body_timeout) / 4))
        self.connections: weakref.WeakSet[DeadlineProtocol] = weakref.WeakSet()
        self._sweeper: asyncio.Task[None] | None = None

    def watch(self, connection: DeadlineProtocol) -> None:
        self.connections.add(connection)
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())

    async def _sweep_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.sweep_every)
            now = loop.time()
            for connection in list(self.connections):
                if connection.read_deadline is not None and now > connection.read_deadline:
                    connection.expire()

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None

    def protocol(self) -> Any:
        """A protocol class for `uvicorn.Config(http=...)`."""
        return functools.partial(DeadlineProtocol, deadlines=self, max_head_bytes=self.max_head_bytes)


class CorkedTransport:
    """A transport whose writes within one event-loop tick leave in one send()."""

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._held:
            self._loop.call_soon(self.flush)
        self._held.append(data)

    def flush(self) -> None:
        held = self._held
        if held:
            self._held = []
            if not self._transport.is_closing():  # the client may have gone within the tick
                self._transport.write(held[0] if len(held) == 1 else b"".join(held))

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CorkedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, writing through a `CorkedTransport`, with a capped request head;
    a lost connection cancels its running request."""

    def __init__(self, *args: Any, max_head_bytes: int = DEFAULT_MAX_HEAD_BYTES, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_head_bytes = max_head_bytes
        self.head_room: int | None = max_head_bytes  # bytes the current head may still take; None: not in a head
        self.refused = False  # a 431 was sent: what else arrives is dropped

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CorkedTransport(transport, self.loop))  # type: ignore[arg-type]

    def data_received(self, data: bytes) -> None:
        while True:
            room = self.head_room
            if room is None or len(data) <= room:
                if room is not None:
                    self.head_room = room - len(data)
                super().data_received(data)
                return
            # Feed the head only up to the cap: if it has not ended there, it is too large.
            self.head_room = 0
            if room:
                super().data_received(data[:room])
            if self.transport.is_closing():  # the parser refused the request already
                return
            if self.head_room is not None:
                self._refuse_head()
                return
            data = data[room:]

    def on_headers_complete(self) -> None:
        self.head_room = None
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.head_room = self.max_head_bytes  # a kept-alive connection's next request

    def connection_lost(self, exc: Exception | None) -> None:
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            task = cycle.scope.get(TASK_SCOPE)
            if isinstance(task, asyncio.Task):
                task.cancel(CLIENT_GONE)
        super().connection_lost(exc)

    def _refuse_head(self) -> None:
        if self.refused:
            return
        self.refused = True
        error = HeadersTooLarge(
            f"the request line and headers are larger than {self.max_head_bytes} bytes "
            "(gateway.limits.max_header_bytes)"
        )
        ollama = getattr(self, "url", b"").startswith(b"/api/")
        body = orjson.dumps({"error": error.message} if ollama else openai_error(error))
        head = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
        self.transport.write(head + b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body) + body)
        self.transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)


class DeadlineProtocol(CorkedProtocol):
    def __init__(self, *args: Any, deadlines: Deadlines, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.deadlines = deadlines
        self.read_deadline: float | None = None  # loop time by which the current read phase must end

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.read_deadline = self.loop.time() + self.deadlines.headers_timeout
        self.deadlines.watch(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.read_deadline = None
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self.read_deadline is None:  # a new request on a kept-alive connection
            self.read_deadline = self.loop.time() + self.deadlines.headers_timeout

    def on_headers_complete(self) -> None:
        self.read_deadline = self.loop.time() + self.deadlines.body_timeout
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self.read_deadline = None
        super().on_message_complete()

    def expire(self) -> None:
        self.read_deadline = None
        if not self.transport.is_closing():
            self.transport.close()
