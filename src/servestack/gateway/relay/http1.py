"""A lean HTTP/1.1 client for the relay: keep-alive connections to engines, parsed with httptools.

Profiling the gateway under load (docs/benchmarks.md) showed aiohttp's client taking close to
half of the gateway's CPU per request, most of it in generic machinery a relay does not use
(cookie jars, redirects, tracing hooks, header multidicts, payload registries). This client does
only what the relay needs: POST a body with a few headers, read the status and headers, then the
body whole or as it arrives. The response offers the small part of aiohttp's surface the relay
uses (`status`, `headers.get`, `read()`, `content.iter_any()`, `content.read(n)`), so the relay code
reads the same with either client.

Connections are kept per (host, port) and reused last-in first-out, at most `max_idle` of them
idle (the end of a burst of ten thousand streams would otherwise leave as many descriptors behind);
one that sits idle longer than `keepalive_expiry` is dropped rather than risk the server closing it
under a request. A request that fails on a reused connection before any byte of the answer arrived
(the server closed it while it was idle) is sent once more on a new connection. An answer not read to its
end (a client that went away, an error) closes its connection, so the engine sees the
disconnect and stops generating.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, cast
from urllib.parse import urlsplit

import httptools

from servestack.open_files import exhausted

HIGH_WATER = 256 * 1024  # bytes buffered before reading from the engine pauses
KEEPALIVE_EXPIRY = 4.0  # below uvicorn's 5 s keep-alive timeout, which vLLM and SGLang inherit
URL_CACHE_LIMIT = 1024
MAX_IDLE = 256  # idle connections kept per engine: each holds a descriptor here and a slot in the engine


class ConnectError(Exception):
    """The engine could not be connected to (refused, unreachable, no such host)."""


class ProtocolError(Exception):
    """The engine broke HTTP/1.1, or closed the connection before its answer was complete."""


class Abandoned(Exception):
    """The gateway ended the call: the engine behind it is gone (the message says why)."""


class Headers(dict[str, str]):
    """Response headers by lower-case name; `get` accepts any case."""

    def get(self, name: str, default: Any = None) -> Any:
        return super().get(name.lower(), default)


class Response:
    """One answer: headers first, then the body, whole or chunk by chunk as it arrives."""

    def __init__(self, connection: _Connection) -> None:
        self._connection = connection
        self.status = 0
        self.headers = Headers()
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._waiter: asyncio.Future[None] | None = None
        self._headers_done = False
        self._complete = False
        self._error: BaseException | None = None
        self._sink: Callable[[bytes], bool] | None = None  # where the body goes as it arrives (`forward`)
        self._sink_full = False
        self.received_any = False

    @property
    def content(self) -> Response:
        return self

    async def read(self, n: int = -1) -> bytes:
        """The whole body (n < 0), or up to n bytes as soon as some are there (b"" at the end)."""
        if n < 0:
            while not self._complete:
                await self._wait()
            return self._take_all()
        while not self._chunks and not self._complete:
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
        while not self._chunks and not self._complete:
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
            while not self._complete:
                if self._sink_full:
                    await drain()
                    self._sink_full = False
                    self._connection.resume()
                    continue
                await self._wait()
        finally:
            self._sink = None
        if self._error is not None:
            raise self._error

    async def iter_any(self) -> Any:
        """Yield the body in pieces, each as much as has arrived."""
        while chunk := await self.next_chunk():
            yield chunk

    def _take_all(self) -> bytes:
        chunks = self._chunks
        data = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        if self._buffered > HIGH_WATER:
            self._connection.resume()
        self._buffered = 0
        return data

    async def _wait(self) -> None:
        if self._error is not None:
            raise self._error
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None
        if self._error is not None and not self._chunks:
            raise self._error

    def _wake(self) -> None:
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
        if self._buffered > HIGH_WATER:
            self._connection.pause()
        self._wake()

    def fail(self, error: BaseException) -> None:
        if not self._complete and self._error is None:
            self._error = error
            self._wake()

    def finish(self) -> None:
        self._complete = True
        self._wake()


class _Connection(asyncio.Protocol):
    """One keep-alive connection; parser callbacks feed the response in progress."""

    def __init__(self, key: tuple[str, int], idle_timeout: float) -> None:
        self.key = key
        self.idle_timeout = idle_timeout
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.response: Response | None = None
        self.closed = False
        self.idle_since = 0.0
        self._loop = asyncio.get_running_loop()
        self._last_data = 0.0
        self._timer: asyncio.TimerHandle | None = None
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
        self._last_data = self._loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            response.fail(ProtocolError(f"the engine's answer is not valid HTTP/1.1: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._cancel_timer()
        response = self.response
        if response is None:
            return
        if response._headers_done and not self._length_known:
            response.finish()  # a body delimited by the end of the connection
        else:
            response.fail(ProtocolError("the engine closed the connection before its answer was complete"))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        assert self.response is not None
        key = name.decode("latin-1").lower()
        if key in ("content-length", "transfer-encoding"):
            self._length_known = True
        self.response.headers[key] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        assert self.response is not None
        self.response.status = self.parser.get_status_code()
        self.response._headers_done = True
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
        self._last_data = self._loop.time()
        if self._timer is None:  # else the one armed for an earlier request checks this one too (_check_idle)
            self._timer = self._loop.call_at(self._last_data + self.idle_timeout, self._check_idle)
        self.transport.writelines((request, body))
        return response

    def reusable(self) -> bool:
        response = self.response
        return (
            not self.closed
            and response is not None
            and response._complete
            and response._error is None
            and not response._chunks
            and self._keep_alive
        )

    def release(self) -> bool:
        """Make the connection idle again; False (and closed) if it cannot be reused."""
        if not self.reusable():
            self.close()
            return False
        self.response = None
        self.idle_since = self._loop.time()
        return True

    def pause(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def close(self) -> None:
        self._cancel_timer()
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _check_idle(self) -> None:
        """The idle timeout of the answer in progress. One timer serves the requests of a kept-alive
        connection (arming and cancelling one per request cost ~2 µs each): when it comes, it waits on
        from the last byte received, and lapses if no answer is in progress."""
        response = self.response
        if response is None or response._complete:
            self._timer = None
            return
        due = self._last_data + self.idle_timeout
        if self._loop.time() < due:
            self._timer = self._loop.call_at(due, self._check_idle)
            return
        self._timer = None
        response.fail(TimeoutError(f"the engine sent nothing for {self.idle_timeout:g} s"))
        self.close()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class _Exchange:
    """`async with pool.post(...) as response:`; leaving the block releases or closes the connection."""

    def __init__(self, pool: Http1Pool, url: str, data: bytes, headers: dict[str, str]) -> None:
        self._pool = pool
        self._url = url
        self._data = data
        self._headers = headers
        self._connection: _Connection | None = None
        self._abandoned: str | None = None

    def abandon(self, reason: str) -> None:
        """End the call now, whether its answer has begun or not: its reader gets `Abandoned(reason)`."""
        self._abandoned = reason
        connection = self._connection
        if connection is not None:
            if connection.response is not None:
                connection.response.fail(Abandoned(reason))
            connection.close()

    async def __aenter__(self) -> Response:
        key, request = self._pool.request_head(self._url, len(self._data), self._headers)
        for attempt in range(2):
            connection, reused = await self._pool.acquire(key)
            self._connection = connection
            if self._abandoned is not None:  # while it connected
                connection.close()
                raise Abandoned(self._abandoned)
            response = connection.start(request, self._data)
            try:
                while not response._headers_done:
                    await response._wait()
                return response
            except ProtocolError:
                connection.close()
                if not reused or response.received_any or attempt:
                    raise
            except BaseException:
                connection.close()  # cancelled or timed out before the headers: the engine must see it
                raise
        raise AssertionError("unreachable")

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        connection = self._connection
        if connection is None:
            return
        if exc is None and connection.release():
            self._pool.put_back(connection)
        else:
            connection.close()


class Http1Pool:
    """Keep-alive connections to every engine, with the call shape of `aiohttp.ClientSession.post`."""

    def __init__(
        self,
        *,
        connect_timeout: float = 5.0,
        idle_timeout: float = 600.0,
        keepalive_expiry: float = KEEPALIVE_EXPIRY,
        max_idle: int = MAX_IDLE,
    ) -> None:
        self.connect_timeout = connect_timeout
        self.idle_timeout = idle_timeout
        self.keepalive_expiry = keepalive_expiry
        self.max_idle = max_idle
        self._idle: dict[tuple[str, int], list[_Connection]] = {}
        self._urls: dict[str, tuple[tuple[str, int], bytes]] = {}
        self.connections_made = 0

    def post(self, url: str, *, data: bytes, headers: dict[str, str]) -> _Exchange:
        return _Exchange(self, url, data, headers)

    def request_head(self, url: str, length: int, headers: dict[str, str]) -> tuple[tuple[str, int], bytes]:
        key, start = self._target(url)
        lines = [start, b"Content-Length: %d\r\n" % length]
        for name, value in headers.items():
            if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
                raise ProtocolError(f"header {name!r} holds a line break")
            lines.append(f"{name}: {value}\r\n".encode("latin-1"))
        lines.append(b"\r\n")
        return key, b"".join(lines)

    def _target(self, url: str) -> tuple[tuple[str, int], bytes]:
        cached = self._urls.get(url)
        if cached is not None:
            return cached
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ConnectError(f"only http:// URLs are supported by the relay, not {url!r}")
        port = parts.port or 80
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        start = f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n".encode("latin-1")
        if len(self._urls) >= URL_CACHE_LIMIT:
            self._urls.clear()
        self._urls[url] = cached = ((parts.hostname, port), start)
        return cached

    async def acquire(self, key: tuple[str, int]) -> tuple[_Connection, bool]:
        """An idle connection to `key` (reused=True), or a new one."""
        idle = self._idle.get(key)
        if idle:
            now = asyncio.get_running_loop().time()
            while idle:
                connection = idle.pop()
                if not connection.closed and now - connection.idle_since < self.keepalive_expiry:
                    return connection, True
                connection.close()
        return await self._connect(key), False

    async def _connect(self, key: tuple[str, int]) -> _Connection:
        loop = asyncio.get_running_loop()
        host, port = key
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, connection = await loop.create_connection(lambda: _Connection(key, self.idle_timeout), host, port)
        except TimeoutError:
            raise TimeoutError(f"connecting to {host}:{port} took longer than {self.connect_timeout:g} s") from None
        except OSError as exc:
            if exhausted(exc):
                raise  # the gateway's own shortage, not the engine's (open_files.py)
            raise ConnectError(f"cannot connect to {host}:{port}: {exc.strerror or exc}") from None
        self.connections_made += 1
        return connection

    def put_back(self, connection: _Connection) -> None:
        idle = self._idle.setdefault(connection.key, [])
        idle.append(connection)
        # Reuse takes the newest; drop the oldest when it has expired, or when more are idle than
        # are kept, so a burst's connections do not linger once traffic falls (one check per
        # request keeps this cheap).
        oldest = idle[0]
        if (
            oldest.closed
            or len(idle) > self.max_idle
            or connection.idle_since - oldest.idle_since >= self.keepalive_expiry
        ):
            idle.pop(0)
            oldest.close()

    async def close(self) -> None:
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()
