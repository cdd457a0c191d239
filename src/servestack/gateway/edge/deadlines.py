"""Deadlines for reading a request (slow-client protection), kept by one sweeper per server.

uvicorn closes idle keep-alive connections but puts no bound on how long a client may take to
send a request once it started (or to send anything on a new connection). Here each connection
notes when its current read phase must end — headers from the first byte (or from accept), the
body from the end of the headers, the next request's first byte from the end of an answer (uvicorn's
keep-alive timeout) — and one sweeper task per server closes connections past their deadline a few
times per timeout, looking only at the connections in a read phase. Per request that is a few float
stores and a set's adds and discards: no timer is armed and cancelled for every request.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from typing import Any

from servestack.gateway.edge.protocol import DEFAULT_MAX_HEAD_BYTES, CorkedProtocol


class Deadlines:
    """The read timeouts of one server, and the sweeper that enforces them."""

    def __init__(self, headers_timeout: float, body_timeout: float, max_head_bytes: int = DEFAULT_MAX_HEAD_BYTES):
        self.max_head_bytes = max_head_bytes
        self.headers_timeout = headers_timeout
        self.body_timeout = body_timeout
        self.sweep_every = min(1.0, max(0.02, min(headers_timeout, body_timeout) / 4))
        # The connections in a read phase (a relayed stream's is over once its request is in, so ten
        # thousand open streams cost the sweep nothing).
        self.reading: set[DeadlineProtocol] = set()
        self._sweeper: asyncio.Task[None] | None = None

    def watch(self, connection: DeadlineProtocol) -> None:
        self.reading.add(connection)
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())

    async def _sweep_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.sweep_every)
            now = loop.time()
            for connection in [c for c in self.reading if c.read_deadline is not None and now > c.read_deadline]:
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


class DeadlineProtocol(CorkedProtocol):
    def __init__(self, *args: Any, deadlines: Deadlines, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.deadlines = deadlines
        self.read_deadline: float | None = None  # loop time by which the current read phase must end
        self.idle = False  # kept alive between requests: the deadline is the keep-alive timeout's

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.read_deadline = self.loop.time() + self.deadlines.headers_timeout
        self.deadlines.watch(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._done_reading()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self.read_deadline is None or self.idle:  # a new request on a kept-alive connection
            self.idle = False
            self.read_deadline = self.loop.time() + self.deadlines.headers_timeout
            self.deadlines.reading.add(self)

    def on_response_complete(self) -> None:
        """uvicorn's, with the keep-alive timeout kept by the sweep rather than a timer armed and cancelled
        for every response: an idle connection is one waiting for its next request's first byte."""
        self._release_writer()
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
        elif self.read_deadline is None:  # else the next request has begun already (pipelined bytes)
            self.idle = True
            self.read_deadline = self.loop.time() + self.timeout_keep_alive
            self.deadlines.reading.add(self)

    def on_headers_complete(self) -> None:
        self.read_deadline = self.loop.time() + self.deadlines.body_timeout
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._done_reading()
        super().on_message_complete()

    def expire(self) -> None:
        self._done_reading()
        if not self.transport.is_closing():
            self.transport.close()

    def _done_reading(self) -> None:
        self.read_deadline = None
        self.deadlines.reading.discard(self)
