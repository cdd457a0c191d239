"""One keep-alive connection to an engine, and the answer in progress on it (the relay's client: http1.py).

The connection feeds httptools' parser from its transport; the parser's callbacks fill the `Response`,
which a request reads whole, chunk by chunk, or has forwarded piece by piece from the connection's
callback (`forward`). Reading pauses while more than `HIGH_WATER` bytes wait unread. One timer per
pool (`IdleWatch`) bounds how long an answer may go without a byte.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

import httptools

HIGH_WATER = 256 * 1024  # bytes buffered before reading from the engine pauses
FRAMING_HEADERS = frozenset((b"content-length", b"transfer-encoding"))  # else the body ends with the connection


class ProtocolError(Exception):
    """The engine broke HTTP/1.1, or closed the connection before its answer was complete."""


class Headers(dict[str, str]):
    """Response headers by lower-case name; `get` accepts any case."""

    def get(self, name: str, default: Any = None) -> Any:
        return super().get(name.lower(), default)


class Response:
    """One answer: headers first, then the body, whole or chunk by chunk as it arrives."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self.status = 0
        self.raw_headers: list[tuple[bytes, bytes]] = []  # as the engine sent them; `headers` decodes them when asked
        self._headers: Headers | None = None
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._waiter: asyncio.Future[None] | None = None
        self.head_done = False  # status and headers are in
        self.complete = False  # the body is in, to its end
        self.error: BaseException | None = None  # what ended the answer early
        self._sink: Callable[[bytes], bool] | None = None  # where the body goes as it arrives (`forward`)
        self._sink_full = False
        self.received_any = False
        # Told of each change (head, end, failure; body parts too when `notify_body`) instead of waking a
        # waiter: the callback data path's reader (edge/lane.py) follows the answer from the connection's callbacks.
        self.notify: Callable[[], None] | None = None
        self.notify_body = True
        self.reading_whole = False  # the reader takes the body at its end: reading never pauses for it

    @property
    def headers(self) -> Headers:
        if self._headers is None:
            raw = self.raw_headers
            self._headers = Headers((name.decode("latin-1").lower(), value.decode("latin-1")) for name, value in raw)
        return self._headers

    @property
    def content(self) -> Response:
        return self

    async def read(self, n: int = -1) -> bytes:
        """The whole body (n < 0), or up to n bytes as soon as some are there (b"" at the end)."""
        if n < 0:
            self.read_whole()
            while not self.complete:
                await self._wait()
            return self._take_all()
        while not self._chunks and not self.complete:
            await self._wait()
        if not self._chunks:
            return b""
        data = self._take_all()
        if len(data) > n:
            self._chunks.appendleft(data[n:])
            self._buffered += len(data) - n
            data = data[:n]
        return data

    async def next_chunk(self) -> bytes:
        """As much of the body as has arrived, once some has (b"" at its end)."""
        while not self._chunks and not self.complete:
            await self._wait()
        return self._take_all() if self._chunks else b""

    async def forward(self, sink: Callable[[bytes], bool], drain: Callable[[], Awaitable[None]]) -> None:
        """Hand the rest of the body to `sink` piece by piece, from the connection's callback as each arrives
        (no task switch per piece), until its end; raises what ended it early. `sink` returns False when
        its reader cannot take more for now: reading from the engine pauses until `drain()` returns."""
        if self._chunks and not sink(self._take_all()):
            await drain()
        self._sink = sink
        try:
            while not self.complete:
                if self._sink_full:
                    await drain()
                    self._sink_full = False
                    self._connection.resume()
                    continue
                await self._wait()
        finally:
            self._sink = None
        if self.error is not None:
            raise self.error

    def iter_any(self) -> AsyncIterator[bytes]:
        """The body in pieces, each as much as has arrived."""
        return Pieces(self.next_chunk)

    def stream_to(self, sink: Callable[[bytes], bool]) -> None:
        """From now on, hand each body part to `sink` as it arrives (what is buffered first), from the
        connection's callback; when `sink` returns False, reading pauses until `Connection.resume`."""
        if self._chunks:
            sink(self._take_all())
        self._sink = sink

    def detach(self) -> None:
        """Its reader is done with it: forget the reader's callbacks (each refers back to the reader, a cycle)."""
        self.notify = None
        self._sink = None

    def take(self) -> bytes:
        """What of the body has arrived and not been taken yet."""
        return self._take_all() if self._chunks else b""

    def read_whole(self) -> None:
        """The reader takes the body only once it is all in: buffering it must not pause reading (past
        HIGH_WATER it would wait forever for an end the paused connection cannot deliver)."""
        self.reading_whole = True
        self._connection.resume()

    def _take_all(self) -> bytes:
        chunks = self._chunks
        data = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        if self._buffered > HIGH_WATER:
            self._connection.resume()
        self._buffered = 0
        return data

    async def _wait(self) -> None:
        self._raise_error()
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None
        if not self._chunks:
            self._raise_error()  # a call, not `self.error` tested here: mypy would keep its narrowing past the await

    def _raise_error(self) -> None:
        if self.error is not None:
            raise self.error

    def _wake(self) -> None:
        if self.notify is not None:
            self.notify()
            return
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def feed(self, data: bytes) -> None:
        sink = self._sink
        if sink is not None:
            if not sink(data):
                self._sink_full = True
                self._connection.pause()
                self._wake()
            return
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered > HIGH_WATER and not self.reading_whole:
            self._connection.pause()
        if self.notify_body:
            self._wake()

    def fail(self, error: BaseException) -> None:
        if not self.complete and self.error is None:
            self.error = error
            self._wake()

    def finish(self) -> None:
        self.complete = True
        self._wake()


class Connection(asyncio.Protocol):
    """One keep-alive connection; parser callbacks feed the response in progress."""

    def __init__(self, key: tuple[str, int], watch: IdleWatch) -> None:
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.response: Response | None = None
        self.closed = False
        self.idle_since = 0.0
        self._watch = watch
        self._loop = watch.loop  # not asyncio.get_running_loop(): a getpid() syscall on Python 3.11
        self.last_data = 0.0  # loop time of the last byte from the engine (or of the request)
        self._length_known = False
        self._keep_alive = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not asyncio's classes

    def data_received(self, data: bytes) -> None:
        response = self.response
        if response is None:  # bytes nobody asked for: the connection is not trustworthy any more
            self.close()
            return
        response.received_any = True
        self.last_data = self._loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            response.fail(ProtocolError(f"the engine's answer is not valid HTTP/1.1: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._watch.busy.discard(self)
        response = self.response
        if response is None:
            return
        if response.head_done and not self._length_known:
            response.finish()  # a body delimited by the end of the connection
        else:
            response.fail(ProtocolError("the engine closed the connection before its answer was complete"))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        assert self.response is not None
        if not self._length_known and name.lower() in FRAMING_HEADERS:
            self._length_known = True
        self.response.raw_headers.append((name, value))

    def on_headers_complete(self) -> None:
        assert self.response is not None
        self.response.status = self.parser.get_status_code()
        self.response.head_done = True
        self.response._wake()

    def on_body(self, body: bytes) -> None:
        assert self.response is not None
        self.response.feed(body)

    def on_message_complete(self) -> None:
        assert self.response is not None
        self._keep_alive = self.parser.should_keep_alive()  # llhttp forgets it once the message is done
        self.response.finish()

    # for the pool and the response
    def start(self, request: bytes, body: bytes) -> Response:
        assert self.transport is not None
        self.response = response = Response(self)
        self._length_known = False
        self._keep_alive = False
        self.last_data = self._loop.time()
        self._watch.watch(self)
        self.transport.writelines((request, body))
        return response

    def reusable(self) -> bool:
        response = self.response
        return (
            not self.closed
            and response is not None
            and response.complete
            and response.error is None
            and not response._chunks
            and self._keep_alive
        )

    def release(self) -> bool:
        """Make the connection idle again; False (and closed) if it cannot be reused."""
        if not self.reusable():
            self.close()
            return False
        self.response = None
        self._watch.busy.discard(self)
        self.idle_since = self._loop.time()
        return True

    def pause(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def close(self) -> None:
        self._watch.busy.discard(self)
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def silent(self, timeout: float) -> None:
        """The engine sent nothing for `timeout` seconds (IdleWatch): the answer in progress fails."""
        response = self.response
        if response is None or response.complete:  # nothing in progress: nothing to time out
            self._watch.busy.discard(self)
            return
        response.fail(TimeoutError(f"the engine sent nothing for {timeout:g} s"))
        self.close()


class IdleWatch:
    """The idle timeout of the answers in progress on one pool's connections, kept by one timer.

    An answer whose engine sent nothing for `timeout` seconds fails, and its connection closes. The
    connections with an answer in progress are looked at a few times per timeout (one is failed between
    1 and 1.25 timeouts after its last byte), so ten thousand open streams hold no timer each.
    """

    def __init__(self, timeout: float, loop: asyncio.AbstractEventLoop) -> None:
        self.timeout = timeout
        self.loop = loop
        self.every = max(0.02, timeout / 4)
        self.busy: set[Connection] = set()  # the connections with an answer in progress
        self._timer: asyncio.TimerHandle | None = None

    def watch(self, connection: Connection) -> None:
        self.busy.add(connection)
        if self._timer is None:
            self._timer = self.loop.call_later(self.every, self._sweep)

    def _sweep(self) -> None:
        self._timer = None
        late = self.loop.time() - self.timeout
        for connection in [c for c in self.busy if c.last_data < late]:
            connection.silent(self.timeout)
        if self.busy:
            self._timer = self.loop.call_later(self.every, self._sweep)


class Pieces:
    """Iterates over what `next_chunk` returns until it returns b"" (a class, not an async generator: the
    compiled build's mypyc compiles no async generator)."""

    def __init__(self, next_chunk: Callable[[], Awaitable[bytes]]) -> None:
        self._next_chunk = next_chunk

    def __aiter__(self) -> Pieces:
        return self

    async def __anext__(self) -> bytes:
        if chunk := await self._next_chunk():
            return chunk
        raise StopAsyncIteration
