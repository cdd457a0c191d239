"""The gateway's HTTP/1.1 server protocol: httptools' parser, uvicorn's request cycle for the ASGI app, and
what the gateway needs beyond uvicorn's own protocol, which this one replaces.

Why its own: uvicorn's protocol is interpreted Python that every request passes through, and was the
last such part of the request path once the rest could be compiled (setup.py; docs/benchmarks.md,
"Per core"). This one is one class, made for one connection from settings its server shares, so it
compiles as well. What it keeps of uvicorn's: the parser's callbacks, the ASGI scope, the request
cycle (`RequestResponseCycle`, used as is), pipelined requests answered in order, 400 for a request
that does not parse, a graceful shutdown (`shutdown`) through uvicorn's `Server`. What it adds:

- A cap on the request head: uvicorn puts no bound on a request's line and headers (100 MiB of them
  on one connection were read into memory). The bytes from a request's first byte to the end of its
  headers are counted as they arrive; past `max_head_bytes` the parser is fed no more, the client gets
  431, and the connection is closed a little later (`LINGER_SECONDS`) while what the client still sends
  is read and dropped: closing at once, with its data unread, would reset the connection and could
  discard the 431 before the client read it.
- Requests end with their connection: uvicorn tells an app that its client left only through
  `receive()`, which an app waiting on an engine is not reading. Here the connection's running request
  is cancelled (the task's cancel message is `CLIENT_GONE`), so whatever it holds — an engine request,
  an in-flight count, a key's concurrency slot, a queue turn — is released at once, with no watcher
  task per request. The app names its task in the request's scope (`TASK_SCOPE`).
- Read deadlines, kept by a sweep (deadlines.py) rather than a timer per request; one write per
  answer's first tick and a stream's parts written straight (corked.py).
- The lane: a request whose head qualifies (lane.py: a POST to an OpenAI generation route, HTTP/1.1
  kept alive, a body of known length, nothing else in flight on the connection) is collected here and
  handed to the lane with its body instead of starting an ASGI cycle. While the lane answers it,
  `self.cycle` is a `LaneCycle` stand-in, so pipelining, a disconnect and a shutdown treat it as a
  cycle. The lane writes its answer through the connection (`LaneHost`), or hands the request back
  (`hand_over`), and an ASGI cycle is made for it then, with its body already in.
"""

from __future__ import annotations

import asyncio
import logging
import urllib.parse
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Final, Self

import httptools
import orjson
from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle
from uvicorn.protocols.utils import get_local_addr, get_remote_addr

from servestack.asgi import CHUNK_WRITER_SCOPE, Scope, Send, openai_error
from servestack.errors import BadRequest, GatewayError, HeadersTooLarge
from servestack.gateway.edge.corked import CorkedTransport, CycleChunkWriter, Flow
from servestack.gateway.edge.deadlines import Deadlines
from servestack.gateway.edge.lane_cycle import LaneCycle, LaneRequest, LaneTaker

log = logging.getLogger("servestack.gateway")
CLIENT_GONE: Final = "servestack: the client disconnected"  # the cancel message of a request whose client left
TASK_SCOPE: Final = "servestack.task"  # where the app leaves the task that serves the request, in its ASGI scope
# A request the callback data path (lane.py) hands to the app part-way: the coroutine that finishes it.
RESUME_SCOPE: Final = "servestack.resume"
DEFAULT_MAX_HEAD_BYTES: Final = 64 * 1024
LINGER_SECONDS: Final = 2.0
LENIENT: Final = hasattr(httptools.HttpRequestParser, "set_dangerous_leniencies")  # httptools >= 0.6.3
Resume = Callable[[Send], Awaitable[None]]  # the rest of a request the lane hands over, run by the app
Cycle = RequestResponseCycle | LaneCycle


class ConnectionSettings:
    """What every connection of one server shares: the app, uvicorn's server state (its connections and
    tasks, for a graceful shutdown), the limits and deadlines, and the lane."""

    def __init__(
        self, app: Any, server_state: Any, app_state: dict[str, Any], deadlines: Deadlines, max_head_bytes: int
    ) -> None:
        self.app = app
        self.server_state = server_state
        self.app_state = app_state
        self.deadlines = deadlines
        self.max_head_bytes = max_head_bytes
        self.lane: LaneTaker | None = None  # the callback data path, when the app has one (server.py sets it)
        self.loop = asyncio.get_running_loop()
        self.logger = logging.getLogger("uvicorn.error")  # what uvicorn's request cycle logs an app's failure to

    def protocol(self) -> GatewayProtocol:
        """A protocol for a new connection (the listener's factory)."""
        return GatewayProtocol(self)


class GatewayProtocol(asyncio.Protocol):
    """One client connection: parses its requests, answers each on the lane or with an ASGI cycle."""

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
        self.handed: RequestResponseCycle | None = None  # a lane request the app finishes
        self.head_room: int | None = settings.max_head_bytes  # bytes the head may still take; None: not in a head
        self.refused = False  # a 431 was sent: what else arrives is dropped
        self.reading = False  # in a read phase: the sweep (deadlines.py) closes it past `read_deadline`
        self.read_deadline = 0.0
        self.idle = False  # kept alive between requests: the deadline is the keep-alive timeout's
        self.on_lost: Callable[[], None] | None = None  # told once when the connection ends (listener.py)
        # (server, client) addresses, when the listener that accepted the connection knows them
        self.addresses: tuple[tuple[str, int], tuple[str, int]] | None = None
        self.lane_parts: list[bytes] | None = None  # the body of a request the lane will take, as it arrives
        self.lane_call: LaneRequest | None = None  # the lane's request in progress
        self.lane_cycle: LaneCycle | None = None
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
        if self.lane_call is not None:
            self.lane_call.writable()

    def connection_lost(self, exc: Exception | None) -> None:
        self._done_reading()
        call = self.lane_call
        if call is not None:
            self.lane_call = None
            call.client_gone()
        for cycle in (self.cycle, self.handed):
            if isinstance(cycle, RequestResponseCycle) and not cycle.response_complete:
                task = cycle.scope.get(TASK_SCOPE)
                if isinstance(task, asyncio.Task):
                    task.cancel(CLIENT_GONE)
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
        if self.settings.lane is not None and self._lane_takes():
            scope = self.scope
            scope["method"] = "POST"
            scope["path"] = self.url.decode("ascii")
            scope["raw_path"] = self.url
            scope["query_string"] = b""
            self.lane_parts = []
            return
        self._start_cycle()

    def on_body(self, body: bytes) -> None:
        parts = self.lane_parts
        if parts is not None:
            parts.append(body)
            return
        cycle = self.cycle
        if isinstance(cycle, RequestResponseCycle) and not cycle.response_complete:
            cycle.body += body
            if len(cycle.body) > HIGH_WATER_LIMIT:
                self.flow.pause_reading()
            cycle.message_event.set()

    def on_message_complete(self) -> None:
        self._done_reading()
        self.head_room = self.settings.max_head_bytes  # a kept-alive connection's next request
        parts = self.lane_parts
        if parts is None:
            cycle = self.cycle
            if isinstance(cycle, RequestResponseCycle) and not cycle.response_complete:
                cycle.more_body = False
                cycle.message_event.set()
            return
        self.lane_parts = None
        self._to_lane(parts[0] if len(parts) == 1 else b"".join(parts))

    # ASGI cycles

    def _start_cycle(self) -> None:
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

    # the lane (lane.py), and LaneHost (lane_types.py)

    def _lane_takes(self) -> bool:
        """Whether the request whose head just ended goes to the lane: a POST to one of its routes, HTTP/1.1
        kept alive, nothing else in flight on the connection, a body of known length within the cap."""
        lane = self.settings.lane
        assert lane is not None
        cycle, parser = self.cycle, self.parser
        if (
            self.url not in lane.paths
            or self.expect_100_continue
            or (cycle is not None and not cycle.response_complete)
            or self.pipeline
            or self.lane_call is not None
            or parser.get_method() != b"POST"
            or parser.get_http_version() != "1.1"
            or not parser.should_keep_alive()
        ):
            return False
        for name, value in self.headers:
            if name == b"content-length":
                return value.isdigit() and int(value) <= lane.max_body_bytes
            if name == b"transfer-encoding":
                return False
        return False

    def _to_lane(self, body: bytes) -> None:
        lane = self.settings.lane
        assert lane is not None
        self.cycle = self.lane_cycle = LaneCycle()
        scope = self.scope
        try:
            self.lane_call = lane.take(self, scope, body)
        except Exception:  # a bug: raised here, the parser would answer 400 for it
            log.exception("unexpected error taking %s %s", scope["method"], scope["path"])
            self.lane_call = None
            if self.lane_cycle is not None:
                self.hand_over(scope, body, None)  # the app's own path answers it (or fails the same way, with a 500)

    @property
    def keep_alive(self) -> bool:
        return self.lane_cycle is None or self.lane_cycle.keep_alive

    def write(self, data: bytes) -> None:
        self.transport.write(data)

    def write_whole(self, data: bytes) -> None:
        transport = self.transport.raw  # past the cork: the answer is all there, in one piece
        if not transport.is_closing():
            transport.write(data)

    def write_paused(self) -> bool:
        return self.flow.write_paused

    def abort(self) -> None:
        self.lane_call = None
        self.transport.close()

    def answered(self) -> None:
        stand_in = self.lane_cycle
        assert stand_in is not None
        self.lane_call = self.lane_cycle = None
        stand_in.response_complete = True
        if not stand_in.keep_alive:
            self.transport.close()
        self.on_response_complete()

    def hand_over(self, scope: Scope, body: bytes, resume: Resume | None) -> None:
        stand_in = self.lane_cycle
        assert stand_in is not None
        self.lane_call = self.lane_cycle = None
        if resume is not None:
            scope[RESUME_SCOPE] = resume
        cycle = self._asgi_cycle(scope, False, stand_in.keep_alive)
        cycle.body = bytearray(body)
        cycle.more_body = False
        if self.cycle is stand_in:
            self.cycle = cycle
        else:  # the connection's next request began meanwhile (pipelined): it waits for this one
            self.handed = cycle
        self._run(cycle)

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
