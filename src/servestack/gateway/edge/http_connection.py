"""One client connection speaking HTTP/1.1 to an ASGI app: httptools' parser, uvicorn's request cycle, and
what the gateway needs beyond uvicorn's own protocol, which this replaces (protocol.py adds the lane).

Why its own: uvicorn's protocol is interpreted Python that every request passes through, the last such
part of the request path once the rest could be compiled (setup.py; docs/benchmarks.md, "Per core").
This one is made for each connection from settings its server shares, and compiles. Kept of uvicorn's:
the parser's callbacks, the ASGI scope, the request cycle (`RequestResponseCycle`, used as is),
pipelined requests answered in order, a graceful shutdown through uvicorn's `Server` (`shutdown`).
Added:

- A cap on the request head: uvicorn puts no bound on a request's line and headers (100 MiB of them
  on one connection were read into memory). The bytes from a request's first byte to the end of its
  headers are counted as they arrive; past `max_head_bytes` the parser is fed no more, the client gets
  431, and the connection is closed a little later (`LINGER_SECONDS`) while what the client still sends
  is read and dropped: closing at once, with its data unread, would reset the connection and could
  discard the 431 before the client read it. A request that does not parse gets a 400; both in the
  shape of the API asked for (Ollama's on /api/*), where uvicorn answered in plain text.
- Requests end with their connection: uvicorn tells an app that its client left only through
  `receive()`, which an app waiting on an engine is not reading. Here the connection's running request
  is cancelled (the task's cancel message is `CLIENT_GONE`), so whatever it holds — an engine request,
  an in-flight count, a key's concurrency slot, a queue turn — is released at once, with no watcher
  task per request. The app names its task in the request's scope (`TASK_SCOPE`).
- Read deadlines and the keep-alive timeout kept by a sweep (deadlines.py) rather than a timer per
  request; one write per answer's first tick, and a stream's parts written straight (corked.py).
"""

from __future__ import annotations

import asyncio
import logging
import urllib.parse
from collections import deque
from collections.abc import Callable
from typing import Any, Final, Self

import httptools
import orjson
from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle
from uvicorn.protocols.utils import get_local_addr, get_remote_addr

from servestack.asgi import CHUNK_WRITER_SCOPE, Scope, openai_error
from servestack.errors import BadRequest, GatewayError, HeadersTooLarge
from servestack.gateway.edge.corked import CorkedTransport, CycleChunkWriter, Flow
from servestack.gateway.edge.deadlines import Deadlines
from servestack.gateway.edge.lane_cycle import LaneCycle, LaneTaker

log = logging.getLogger("servestack.gateway")
CLIENT_GONE: Final = "servestack: the client disconnected"  # the cancel message of a request whose client left
TASK_SCOPE: Final = "servestack.task"  # where the app leaves the task that serves the request, in its ASGI scope
DEFAULT_MAX_HEAD_BYTES: Final = 64 * 1024
LINGER_SECONDS: Final = 2.0
LENIENT: Final = hasattr(httptools.HttpRequestParser, "set_dangerous_leniencies")  # httptools >= 0.6.3
Cycle = RequestResponseCycle | LaneCycle  # a request's, as the connection tracks it


class ConnectionSettings:
    """What every connection of one server shares: the app, uvicorn's server state (its connections and
    tasks, for a graceful shutdown), the head cap and deadlines, and the lane (protocol.py)."""

    def __init__(
        self,
        app: Any,
        server_state: Any,
        app_state: dict[str, Any],
        deadlines: Deadlines,
        max_head_bytes: int,
        lane: LaneTaker | None = None,
    ) -> None:
        self.app = app
        self.server_state = server_state
        self.app_state = app_state
        self.deadlines = deadlines
        self.max_head_bytes = max_head_bytes
        self.lane = lane  # the callback data path, when the app has one
        self.loop = asyncio.get_running_loop()
        self.logger = logging.getLogger("uvicorn.error")  # what uvicorn's request cycle logs an app's failure to


class HttpConnection(asyncio.Protocol):
    """One client connection: parses its requests and answers each with an ASGI cycle."""

    __deletable__ = ("parser",)  # mypyc: `connection_lost` drops it (the parser refers back to this protocol)
    transport: CorkedTransport  # set when the connection is made
    flow: Flow
    server: Any  # this end's address, and the client's
    client: Any

    def __init__(self, settings: ConnectionSettings) -> None:
        self.settings = settings
        self.loop = settings.loop
        self.parser = httptools.HttpRequestParser(self)
        if LENIENT:
            self.parser.set_dangerous_leniencies(lenient_data_after_close=True)  # as uvicorn does
        self.pipeline: deque[RequestResponseCycle] = deque()  # requests waiting for the one in progress
        self.cycle: Cycle | None = None  # the latest request's
        self.head_room: int | None = settings.max_head_bytes  # bytes the head may still take; None: not in a head
        self.refused = False  # a 431 was sent: what else arrives is dropped
        self.reading = False  # in a read phase: the sweep (deadlines.py) closes it past `read_deadline`
        self.read_deadline = 0.0
        self.idle = False  # kept alive between requests: the deadline is the keep-alive timeout's
        self.on_lost: Callable[[], None] | None = None  # told once when the connection ends (listener.py)
        # (server, client) addresses, when the listener that accepted the connection knows them
        self.addresses: tuple[tuple[str, int], tuple[str, int]] | None = None
        # the request whose head is being read
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.expect_100_continue = False
        self.scope: dict[str, Any] = {}

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        raw: Any = transport
        self.transport = corked = CorkedTransport(raw, self.loop)
        self.flow = Flow(corked)
        if self.addresses is None:
            self.server = get_local_addr(raw)
            self.client = get_remote_addr(raw)
        else:  # what accept() gave the listener: no syscall for each (a tenth of the CPU of opening a stream)
            self.server, self.client = self.addresses
        settings = self.settings
        settings.server_state.connections.add(self)
        self._read_until(settings.deadlines.headers_timeout)
        settings.deadlines.watch(self)

    def data_received(self, data: bytes) -> None:
        while True:
            room = self.head_room
            if room is None or len(data) <= room:
                if room is not None:
                    self.head_room = room - len(data)
                self._feed(data)
                return
            # Feed the head only up to the cap: if it has not ended there, it is too large.
            self.head_room = 0
            if room:
                self._feed(data[:room])
            if self.transport.is_closing():  # the parser refused the request already
                return
            if self._in_head():
                self._refuse_head()
                return
            data = data[room:]

    def _in_head(self) -> bool:
        """Whether a request's head is being read (the parser's callbacks change it during `_feed`)."""
        return self.head_room is not None

    def _feed(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            log.warning("a client asked to upgrade its connection (%s): not supported", self.url[:100])
        except httptools.HttpParserCallbackError as exc:  # a bug in a callback here
            log.error("unexpected error reading a request for %s", self.url[:100], exc_info=exc.__context__)
            self._answer_and_close(400, "Bad Request", BadRequest("invalid HTTP request"))
        except httptools.HttpParserError as exc:
            self._answer_and_close(400, "Bad Request", BadRequest(f"invalid HTTP request: {exc}"))

    def eof_received(self) -> None:
        pass

    def pause_writing(self) -> None:
        self.flow.pause_writing()

    def resume_writing(self) -> None:
        self.flow.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._done_reading()
        self._client_gone()
        self.lost()
        self.settings.server_state.connections.discard(self)
        cycle = self.cycle
        if cycle is not None:
            if not cycle.response_complete:
                cycle.disconnected = True
            cycle.message_event.set()
        self.flow.resume_writing()
        if exc is None:
            self.transport.close()
        del self.parser

    def _client_gone(self) -> None:
        """End what the connection's requests still hold: the client left."""
        cancel(self.cycle)

    # the parser's callbacks

    def on_message_begin(self) -> None:
        self.url = b""
        self.expect_100_continue = False
        headers: list[tuple[bytes, bytes]] = []
        self.headers = headers
        self.scope = {
            "type": "http", "http_version": "1.1", "server": self.server, "client": self.client,
            "scheme": "http", "root_path": "", "headers": headers,
        }  # fmt: skip
        self.transport.cork()  # the answer's head and first body part leave together
        if not self.reading or self.idle:  # a new request on a kept-alive connection
            self.idle = False
            self._read_until(self.settings.deadlines.headers_timeout)

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        value = value.rstrip(b" \t")  # llhttp keeps trailing whitespace, which RFC 9110 excludes from the value
        if name == b"expect" and value.lower() == b"100-continue":
            self.expect_100_continue = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.head_room = None
        self._read_until(self.settings.deadlines.body_timeout)
        self._head_read()

    def on_body(self, body: bytes) -> None:
        cycle = self.cycle
        if isinstance(cycle, RequestResponseCycle) and not cycle.response_complete:
            cycle.body += body
            if len(cycle.body) > HIGH_WATER_LIMIT:
                self.flow.pause_reading()
            cycle.message_event.set()

    def on_message_complete(self) -> None:
        self._done_reading()
        self.head_room = self.settings.max_head_bytes  # a kept-alive connection's next request
        self._body_read()

    # ASGI cycles

    def _head_read(self) -> None:
        """Make the request whose head just ended an ASGI cycle, and run it (or queue it behind the one in
        progress)."""
        parser, scope = self.parser, self.scope
        http_version = parser.get_http_version()
        scope["method"] = parser.get_method().decode("ascii")
        if http_version != "1.1":
            scope["http_version"] = http_version
        url: Any = httptools.parse_url(self.url)  # Any: its stub has `query: bytes`, but it is None when absent
        raw_path: bytes = url.path
        path = raw_path.decode("ascii")
        scope["path"] = urllib.parse.unquote(path) if "%" in path else path
        scope["raw_path"] = raw_path
        scope["query_string"] = url.query or b""
        keep_alive = http_version != "1.0" and parser.should_keep_alive()
        previous = self.cycle
        self.cycle = cycle = self._asgi_cycle(scope, self.expect_100_continue, keep_alive)
        if previous is None or previous.response_complete:
            self._run(cycle)
        else:  # pipelined: it waits for the one in progress
            self.flow.pause_reading()
            self.pipeline.appendleft(cycle)

    def _body_read(self) -> None:
        cycle = self.cycle
        if isinstance(cycle, RequestResponseCycle) and not cycle.response_complete:
            cycle.more_body = False
            cycle.message_event.set()

    def _asgi_cycle(self, scope: Scope, expect_100_continue: bool, keep_alive: bool) -> RequestResponseCycle:
        settings = self.settings
        scope["asgi"] = {"version": "3.0", "spec_version": "2.3"}
        scope["state"] = settings.app_state.copy()
        cycle = RequestResponseCycle(
            scope=scope,  # type: ignore[arg-type]
            transport=self.transport,  # type: ignore[arg-type]
            flow=self.flow,  # type: ignore[arg-type]
            logger=settings.logger,
            access_logger=settings.logger,
            access_log=False,
            default_headers=settings.server_state.default_headers,
            message_event=asyncio.Event(),
            expect_100_continue=expect_100_continue,
            keep_alive=keep_alive,
            on_response=self.on_response_complete,
        )
        scope[CHUNK_WRITER_SCOPE] = CycleChunkWriter(cycle, self.transport)
        return cycle

    def _run(self, cycle: RequestResponseCycle) -> None:
        tasks = self.settings.server_state.tasks
        task = self.loop.create_task(cycle.run_asgi(self.settings.app))
        task.add_done_callback(tasks.discard)
        tasks.add(task)

    def on_response_complete(self) -> None:
        """An answer is complete: the next pipelined request starts, or the connection waits for one, as long
        as the keep-alive timeout allows."""
        cycle = self.cycle
        if isinstance(cycle, RequestResponseCycle):  # its scope lets go of its writer, which refers back to it
            cycle.scope.pop(CHUNK_WRITER_SCOPE, None)  # type: ignore[misc]
        self.settings.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.flow.resume_reading()
        if self.pipeline:
            self._run(self.pipeline.pop())
        elif not self.reading:  # else the next request has begun already (pipelined bytes)
            self.idle = True
            self._read_until(self.settings.deadlines.keep_alive)

    def shutdown(self) -> None:
        """The server is stopping (uvicorn's `Server` calls it): close now if idle, else after the answer."""
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            self.transport.close()
        else:
            cycle.keep_alive = False

    # deadlines (deadlines.py)

    def _read_until(self, timeout: float) -> None:
        self.read_deadline = self.loop.time() + timeout
        if not self.reading:
            self.reading = True
            self.settings.deadlines.reading.add(self)

    def _done_reading(self) -> None:
        if self.reading:
            self.reading = False
            self.settings.deadlines.reading.discard(self)

    def expire(self) -> None:
        self._done_reading()
        if not self.transport.is_closing():
            self.transport.close()

    # the listener (listener.py)

    def itself(self) -> Self:
        """The factory `connect_accepted_socket` takes, for a protocol made already."""
        return self

    def attached(self, _pair: object, error: BaseException | None) -> None:
        """`connect_accepted_socket` ended: a connection reset before it reached this protocol is closed
        without it."""
        if error is not None:
            self.lost()

    def lost(self) -> None:
        """Tell whoever counts this connection that it ended (once)."""
        on_lost, self.on_lost = self.on_lost, None
        if on_lost is not None:
            on_lost()

    # refusals

    def _refuse_head(self) -> None:
        if self.refused:
            return
        self.refused = True
        error = HeadersTooLarge(
            f"the request line and headers are larger than {self.settings.max_head_bytes} bytes "
            "(gateway.limits.max_header_bytes)"
        )
        self._answer_and_close(431, "Request Header Fields Too Large", error, linger=True)

    def _answer_and_close(self, status: int, reason: str, error: GatewayError, linger: bool = False) -> None:
        """Answer `error` in the shape of the route asked for (Ollama's on /api/*) and close the connection:
        after `LINGER_SECONDS`, reading and dropping what else arrives, when `linger`."""
        body = orjson.dumps({"error": error.message} if self.url.startswith(b"/api/") else openai_error(error))
        head = b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\n" % (status, reason.encode())
        transport = self.transport
        transport.write(head + b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body) + body)
        if linger:
            transport.write_eof()
            self.loop.call_later(LINGER_SECONDS, transport.close)
        else:
            transport.close()


def cancel(cycle: Cycle | None) -> None:
    """Cancel the task of `cycle`'s request, if it is an ASGI request still being answered."""
    if isinstance(cycle, RequestResponseCycle) and not cycle.response_complete:
        task = cycle.scope.get(TASK_SCOPE)
        if isinstance(task, asyncio.Task):
            task.cancel(CLIENT_GONE)
