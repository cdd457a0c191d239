"""uvicorn's httptools protocol with deadlines for reading a request (slow-client protection).

uvicorn closes idle keep-alive connections but puts no bound on how long a client may take to
send a request once it started (or to send anything on a new connection). Here each connection
notes when its current read phase must end — headers from the first byte (or from accept), the
body from the end of the headers — and one sweeper task per server closes connections past their
deadline a few times per timeout. Per request that is two float stores: no timer is armed and
cancelled for every request.
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


class DeadlineProtocol(HttpToolsProtocol):
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
