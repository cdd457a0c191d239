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
disconnect and stops generating. One connection and the answer on it: connection.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import TracebackType
from urllib.parse import urlsplit

from servestack.driven import Driven
from servestack.gateway.relay.connection import Connection, IdleWatch, ProtocolError, Response
from servestack.open_files import exhausted

KEEPALIVE_EXPIRY = 4.0  # below uvicorn's 5 s keep-alive timeout, which vLLM and SGLang inherit
URL_CACHE_LIMIT = 1024
MAX_IDLE = 256  # idle connections kept per engine: each holds a descriptor here and a slot in the engine

__all__ = ["Abandoned", "ConnectError", "Http1Pool", "ProtocolError", "Response"]


class ConnectError(Exception):
    """The engine could not be connected to (refused, unreachable, no such host)."""


class Abandoned(Exception):
    """The gateway ended the call: the engine behind it is gone (the message says why)."""


Connected = Callable[["Connection | None", "BaseException | None"], None]


class Opening:
    """A connection being opened (`Http1Pool.open`): uvloop's `create_connection` stepped without a Task
    (driven.py), with a timer for its deadline."""

    __slots__ = ("_done", "_driven", "_key", "_late", "_pool", "_timer")

    def __init__(self, pool: Http1Pool, loop: asyncio.AbstractEventLoop, key: tuple[str, int], done: Connected) -> None:
        self._pool = pool
        self._key = key
        self._done = done
        self._late = False  # the deadline came
        self._timer: asyncio.TimerHandle | None = loop.call_later(pool.connect_timeout, self._deadline)
        host, port = key
        watch = pool.idle_watch(loop)
        connecting = loop.create_connection(lambda: Connection(key, watch), host, port)
        self._driven = Driven(connecting, self._made)

    def cancel(self) -> None:
        """Stop opening: a connection made meanwhile is closed; `done` hears a `CancelledError`."""
        self._driven.throw(asyncio.CancelledError())

    def _deadline(self) -> None:
        # A cancellation, not a TimeoutError: uvloop takes an OSError for that address's failure and tries the next.
        self._late = True
        self._driven.throw(asyncio.CancelledError())

    def _made(self, pair: tuple[object, Connection] | None, error: BaseException | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None  # a cancelled timer still holds its callback, and so this: no cycle for the collector
        if pair is not None:
            self._pool.connections_made += 1
            self._done(pair[1], None)
            return
        host, port = self._key
        if self._late:
            error = TimeoutError(f"connecting to {host}:{port} took longer than {self._pool.connect_timeout:g} s")
        elif isinstance(error, OSError) and not exhausted(error):  # the gateway's own shortage goes as it is
            error = ConnectError(f"cannot connect to {host}:{port}: {error.strerror or error}")
        self._done(None, error)


class _Exchange:
    """`async with pool.post(...) as response:`; leaving the block releases or closes the connection."""

    def __init__(self, pool: Http1Pool, method: bytes, url: str, data: bytes | None, headers: dict[str, str]) -> None:
        self._pool = pool
        self._method = method
        self._url = url
        self._data = data
        self._headers = headers
        self._connection: Connection | None = None
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
        data = self._data
        key, request = self._pool.request_head(
            self._url, None if data is None else len(data), self._headers, self._method
        )
        for attempt in range(2):
            connection, reused = await self._pool.acquire(key)
            self._connection = connection
            if self._abandoned is not None:  # while it connected
                connection.close()
                raise Abandoned(self._abandoned)
            response = connection.start(request, data or b"")
            try:
                while not response.head_done:
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
        self._idle: dict[tuple[str, int], list[Connection]] = {}
        self._urls: dict[str, tuple[tuple[str, int], bytes]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watch: IdleWatch | None = None
        self.connections_made = 0

    def post(self, url: str, *, data: bytes, headers: dict[str, str]) -> _Exchange:
        return _Exchange(self, b"POST", url, data, headers)

    def get(self, url: str) -> _Exchange:
        """`async with pool.get(url) as response:` (the monitor's probes and scrapes)."""
        return _Exchange(self, b"GET", url, None, {})

    def request_head(
        self, url: str, length: int | None, headers: dict[str, str], method: bytes = b"POST"
    ) -> tuple[tuple[str, int], bytes]:
        """The request line and headers; `length` None: no body (and no Content-Length)."""
        key, target = self._target(url)
        lines = [method, target]
        if length is not None:
            lines.append(b"Content-Length: %d\r\n" % length)
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
        target = f" {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n".encode("latin-1")  # after the method
        if len(self._urls) >= URL_CACHE_LIMIT:
            self._urls.clear()
        self._urls[url] = cached = ((parts.hostname, port), target)
        return cached

    async def acquire(self, key: tuple[str, int]) -> tuple[Connection, bool]:
        """An idle connection to `key` (reused=True), or a new one."""
        connection = self.take_idle(key)
        if connection is not None:
            return connection, True
        return await self.connect(key), False

    def take_idle(self, key: tuple[str, int]) -> Connection | None:
        """The newest idle connection to `key` that has not expired, if any."""
        idle = self._idle.get(key)
        if idle:
            loop = self._loop
            if loop is None:  # asyncio.get_running_loop() is a getpid() syscall on Python 3.11: once, not per request
                loop = self._loop = asyncio.get_running_loop()
            now = loop.time()
            while idle:
                connection = idle.pop()
                if not connection.closed and now - connection.idle_since < self.keepalive_expiry:
                    return connection
                connection.close()
        return None

    async def connect(self, key: tuple[str, int]) -> Connection:
        """A new connection to `key`; the errors are `open`'s."""
        made: asyncio.Future[Connection] = asyncio.get_running_loop().create_future()

        def done(connection: Connection | None, error: BaseException | None) -> None:
            if made.cancelled():
                if connection is not None:
                    connection.close()
            elif connection is not None:
                made.set_result(connection)
            else:
                made.set_exception(error or ConnectError(f"cannot connect to {key[0]}:{key[1]}"))

        opening = self.open(key, done)
        try:
            return await made
        except asyncio.CancelledError:
            opening.cancel()
            raise

    def idle_watch(self, loop: asyncio.AbstractEventLoop) -> IdleWatch:
        """The idle timeout of this pool's answers in progress (connection.py), one per event loop."""
        if self._watch is None or self._watch.loop is not loop:
            self._watch = IdleWatch(self.idle_timeout, loop)
        return self._watch

    def open(self, key: tuple[str, int], done: Connected) -> Opening:
        """Open a new connection to `key` from callbacks: `done(connection, None)`, or `done(None, error)`
        with a `ConnectError`, a `TimeoutError` past `connect_timeout`, or the `OSError` of the gateway's
        own shortage of descriptors (open_files.py). `done` may be called before this returns."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return Opening(self, self._loop, key, done)

    def recycle(self, connection: Connection) -> None:
        """Take back a connection whose answer was read to its end: idle again if it can be reused, else closed."""
        if connection.release():
            self.put_back(connection)

    def put_back(self, connection: Connection) -> None:
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
