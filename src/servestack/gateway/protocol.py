"""uvicorn's httptools protocol with deadlines for reading a request, and one write per response.

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

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class Deadlines:
    """The read timeouts of one server, and the sweeper that enforces them."""

    def __init__(self, headers_timeout: float, body_timeout: float) -> None:
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
        return functools.partial(DeadlineProtocol, deadlines=self)


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

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CorkedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, writing through a `CorkedTransport`."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CorkedTransport(transport, self.loop))  # type: ignore[arg-type]


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
