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
body from the end of the headers, the next request's first byte from the end of an answer (uvicorn's
keep-alive timeout) — and one sweeper task per server closes connections past their deadline a few
times per timeout, looking only at the connections in a read phase. Per request that is a few float
stores and a set's adds and discards: no timer is armed and cancelled for every request.

A stream's body parts may also skip `send` (CycleChunkWriter, offered in the request's scope): once
its answer has started, the relay writes each part as it arrives, in the engine connection's callback,
framed as uvicorn frames it.

One write: uvicorn writes a response's head and its body separately, two send() calls where one
would do; on loopback each costs ~20 µs of the gateway's ~160 µs per request. The connection's
transport is corked when a request begins, and its first write holds the rest of that event-loop
tick: what else is written in that tick (the body after the head, a stream's first chunk) goes out
with it. A stream's later chunks arrive in later ticks and go out as they come, uncorked.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections import deque
from collections.abc import Callable
from typing import Any, Self

import httptools
import orjson
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from servestack.asgi import CHUNK_WRITER_SCOPE, openai_error
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


class CorkedTransport:
    """A transport that holds a response's first writes until the end of their event-loop tick, and sends
    them in one send(); once that tick is over, writes go straight out until `cork()` is called again."""

    __slots__ = ("_corked", "_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] = []
        self._corked = True

    def cork(self) -> None:
        self._corked = True

    def write(self, data: bytes) -> None:
        if self._corked:
            if not self._held:
                self._loop.call_soon(self.flush)
            self._held.append(data)
        elif not self._transport.is_closing():  # the client may be gone
            self._transport.write(data)

    def flush(self) -> None:
        self._corked = False
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


class CycleChunkWriter:
    """The `ChunkWriter` (asgi.py) of one request: writes what uvicorn's `send` would for a body part."""

    __slots__ = ("_cycle", "_transport")

    def __init__(self, cycle: RequestResponseCycle, transport: CorkedTransport) -> None:
        self._cycle = cycle
        self._transport = transport

    def usable(self) -> bool:
        cycle = self._cycle
        return cycle.response_started and cycle.chunked_encoding is True and not cycle.response_complete

    def write(self, data: bytes) -> bool:
        cycle = self._cycle
        if not cycle.disconnected:
            self._transport.write(b"%x\r\n%s\r\n" % (len(data), data))
        return not cycle.flow.write_paused

    async def drain(self) -> None:
        cycle = self._cycle
        if cycle.flow.write_paused and not cycle.disconnected:
            await cycle.flow.drain()


class CorkedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, writing through a `CorkedTransport`, with a capped request head;
    a lost connection cancels its running request."""

    def __init__(self, *args: Any, max_head_bytes: int = DEFAULT_MAX_HEAD_BYTES, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_head_bytes = max_head_bytes
        self.head_room: int | None = max_head_bytes  # bytes the current head may still take; None: not in a head
        self.refused = False  # a 431 was sent: what else arrives is dropped
        self.on_lost: Callable[[], None] | None = None  # told once when the connection ends (listener.py)
        # (server, client) addresses, when the listener that accepted the connection knows them
        self.addresses: tuple[tuple[str, int], tuple[str, int]] | None = None

    def twin(self) -> Self:
        """A protocol for a new connection, set up as this unused one is.

        uvicorn's `__init__` looks the config, the app, two loggers and their handlers up again for every
        connection; copying what they gave is a dict update. Only the parser and the pipelined requests'
        queue belong to one connection; the rest is the server's or is set per connection.
        """
        twin = object.__new__(type(self))
        twin.__dict__.update(self.__dict__)
        twin.parser = httptools.HttpRequestParser(twin)
        with contextlib.suppress(AttributeError):  # httptools < 0.6.3, as uvicorn does
            twin.parser.set_dangerous_leniencies(lenient_data_after_close=True)
        twin.pipeline = deque()
        return twin

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.corked = corked = CorkedTransport(transport, self.loop)
        if self.addresses is None:
            super().connection_made(corked)  # type: ignore[arg-type]
            return
        # uvicorn's connection_made, with the addresses accept() gave the listener instead of a
        # pseudo-socket and a syscall for each (a tenth of the CPU of opening a stream).
        self.connections.add(self)
        self.transport = corked  # type: ignore[assignment]
        self.flow = FlowControl(corked)  # type: ignore[arg-type]
        self.server, self.client = self.addresses
        self.scheme = "http"

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
        if self.cycle is not None:
            self.scope[CHUNK_WRITER_SCOPE] = CycleChunkWriter(self.cycle, self.corked)  # type: ignore[literal-required]

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.corked.cork()  # the answer's head and first body part leave together

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.head_room = self.max_head_bytes  # a kept-alive connection's next request

    def connection_lost(self, exc: Exception | None) -> None:
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            task = cycle.scope.get(TASK_SCOPE)
            if isinstance(task, asyncio.Task):
                task.cancel(CLIENT_GONE)
        self.lost()
        super().connection_lost(exc)

    def lost(self) -> None:
        """Tell whoever counts this connection that it ended (once)."""
        on_lost, self.on_lost = self.on_lost, None
        if on_lost is not None:
            on_lost()

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
