"""Deadlines for reading a request (slow-client protection) and for an idle kept-alive connection, kept
by one sweeper per server.

uvicorn closes idle keep-alive connections but puts no bound on how long a client may take to
send a request once it started (or to send anything on a new connection). Here each connection
notes when its current read phase must end — headers from the first byte (or from accept), the
body from the end of the headers, the next request's first byte from the end of an answer (the
keep-alive timeout) — and one sweeper task per server closes connections past their deadline a few
times per timeout, looking only at the connections in a read phase. Per request that is a few float
stores and a set's adds and discards: no timer is armed and cancelled for every request.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from typing import Protocol


class Reading(Protocol):
    """A connection in a read phase (edge/protocol.py's GatewayProtocol)."""

    read_deadline: float  # loop time by which the phase must end

    def expire(self) -> None:
        """Close the connection: its phase did not end in time."""


class Deadlines:
    """The read timeouts of one server, and the sweeper that enforces them. A timeout of None is no bound."""

    def __init__(self, headers_timeout: float | None, body_timeout: float | None, keep_alive: float) -> None:
        self.headers_timeout = math.inf if headers_timeout is None else headers_timeout
        self.body_timeout = math.inf if body_timeout is None else body_timeout
        self.keep_alive = keep_alive
        shortest = min(self.headers_timeout, self.body_timeout, keep_alive)
        self.sweep_every = min(1.0, max(0.02, shortest / 4))
        # The connections in a read phase (a relayed stream's is over once its request is in, so ten
        # thousand open streams cost the sweep nothing).
        self.reading: set[Reading] = set()
        self._sweeper: asyncio.Task[None] | None = None

    def watch(self, connection: Reading) -> None:
        self.reading.add(connection)
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())

    async def _sweep_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.sweep_every)
            now = loop.time()
            for connection in [c for c in self.reading if now > c.read_deadline]:
                connection.expire()

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
