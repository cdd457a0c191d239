"""uvicorn's httptools protocol with deadlines for reading a request (slow-client protection).

uvicorn closes idle keep-alive connections but puts no bound on how long a client may take to
send a request once it started (or to send anything on a new connection). Here a timer runs from
the connection's first byte (or from accept) until the headers are complete, and another while a
body is still arriving; a client that misses one is disconnected. One timer per request on the
common path (armed at the first byte, cancelled at the end of the headers).
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class DeadlineProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, headers_timeout: float, body_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.headers_timeout = headers_timeout
        self.body_timeout = body_timeout
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.headers_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        cycle = self.cycle
        if self._deadline is None and cycle is not None and cycle.more_body and not cycle.response_complete:
            self._arm(self.body_timeout)  # headers are in, the body is not complete yet

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:
            self._arm(self.headers_timeout)

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.transport.close()


def deadline_protocol(headers_timeout: float, body_timeout: float) -> Any:
    """A protocol class for `uvicorn.Config(http=...)` with these deadlines."""
    return functools.partial(DeadlineProtocol, headers_timeout=headers_timeout, body_timeout=body_timeout)
