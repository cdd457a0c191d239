"""uvicorn's httptools protocol with a cap on the request head, requests that end with their
connection, one write per response (corked.py), deadlines for reading a request (deadlines.py), and
requests the callback data path answers (lane.py).

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

The lane:
a request whose head qualifies (lane.py: a POST to an OpenAI generation route, HTTP/1.1 kept alive, a
body of known length, nothing else in flight on the connection) is collected here and handed to the
lane with its body instead of starting an ASGI cycle. While the lane answers it, `self.cycle` is a
`LaneCycle` stand-in, so what uvicorn does with the cycle in progress — queueing a pipelined request,
marking a disconnect, ending keep-alive at shutdown — still holds. The lane writes its answer through
the connection (`LaneHost`), or hands the request back (`hand_over`), and an ASGI cycle is made for it
then, with its body already in.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import Any, Protocol, Self, cast

import httptools
import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from servestack.asgi import CHUNK_WRITER_SCOPE, Scope, Send, openai_error
from servestack.errors import HeadersTooLarge
from servestack.gateway.edge.corked import CorkedTransport, CycleChunkWriter, Flow

log = logging.getLogger("servestack.gateway")
CLIENT_GONE = "servestack: the client disconnected"  # the cancel message of a request whose client left
TASK_SCOPE = "servestack.task"  # where the app leaves the task that serves the request, in its ASGI scope
# A request the callback data path (lane.py) hands to the app part-way: the coroutine that finishes it.
RESUME_SCOPE = "servestack.resume"
DEFAULT_MAX_HEAD_BYTES = 64 * 1024
LINGER_SECONDS = 2.0
Resume = Callable[[Send], Awaitable[None]]  # the rest of a request the lane hands over, run by the app


class LaneRequest(Protocol):
    """A request the lane is answering (lane_call.py's LaneCall)."""

    def client_gone(self) -> None: ...
    def writable(self) -> None: ...


class LaneTaker(Protocol):
    """The callback data path, as the protocol sees it (lane.py's Lane)."""

    paths: frozenset[bytes]
    max_body_bytes: int

    def take(self, host: Any, scope: Scope, body: bytes) -> LaneRequest | None: ...


class _Unset:
    """The `message_event` of a lane request's stand-in cycle: nobody waits on it."""

    def set(self) -> None:
        pass


UNSET = _Unset()


class LaneCycle:
    """What uvicorn's protocol sees of a request the lane answers (`self.cycle`): its pipelining waits for
    `response_complete`, a disconnect marks it, a shutdown clears `keep_alive`."""

    __slots__ = ("disconnected", "keep_alive", "message_event", "response_complete")
    scope: Mapping[str, Any] = MappingProxyType({})  # no task of its own to cancel (connection_lost)

    def __init__(self) -> None:
        self.response_complete = False
        self.disconnected = False
        self.keep_alive = True
        self.message_event = UNSET


class CorkedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, writing through a `CorkedTransport`, with a capped request head;
    a lost connection cancels its running request. A request the lane takes (`LaneHost`, lane.py) is
    answered without an ASGI cycle."""

    def __init__(self, *args: Any, max_head_bytes: int = DEFAULT_MAX_HEAD_BYTES, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_head_bytes = max_head_bytes
        self.head_room: int | None = max_head_bytes  # bytes the current head may still take; None: not in a head
        self.refused = False  # a 431 was sent: what else arrives is dropped
        self.on_lost: Callable[[], None] | None = None  # told once when the connection ends (listener.py)
        # (server, client) addresses, when the listener that accepted the connection knows them
        self.addresses: tuple[tuple[str, int], tuple[str, int]] | None = None
        self.lane: LaneTaker | None = None  # the callback data path, when the app has one (server.py sets it)
        self.lane_parts: list[bytes] | None = None  # the body of a request the lane will take, as it arrives
        self.lane_call: LaneRequest | None = None  # the lane's request in progress
        self.lane_cycle: LaneCycle | None = None
        self.handed: RequestResponseCycle | None = None  # a lane request the app finishes

    def factory(self) -> Callable[[], CorkedProtocol]:
        """Makes a protocol for each new connection, set up as this unused one is.

        uvicorn's `__init__` looks the config, the app, two loggers and their handlers up again for every
        connection. Here what this one holds becomes the class attributes of a subclass, so a connection's
        protocol is made with only what belongs to one connection — the parser and the queue of pipelined
        requests — and no per-connection dict to copy (or for the collector to walk) at all.
        """
        shared = {name: value for name, value in self.__dict__.items() if name not in ("parser", "pipeline")}
        kind = type(type(self).__name__, (type(self),), shared)
        lenient = hasattr(httptools.HttpRequestParser, "set_dangerous_leniencies")  # httptools >= 0.6.3

        def make() -> CorkedProtocol:
            protocol: CorkedProtocol = object.__new__(kind)
            protocol.parser = parser = httptools.HttpRequestParser(protocol)
            if lenient:
                parser.set_dangerous_leniencies(lenient_data_after_close=True)  # as uvicorn does
            protocol.pipeline = deque()
            return protocol

        return make

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.corked = corked = CorkedTransport(transport, self.loop)
        if self.addresses is None:
            super().connection_made(corked)  # type: ignore[arg-type]
            return
        # uvicorn's connection_made, with the addresses accept() gave the listener instead of a
        # pseudo-socket and a syscall for each (a tenth of the CPU of opening a stream).
        self.connections.add(self)
        self.transport = corked  # type: ignore[assignment]
        self.flow = Flow(corked)  # type: ignore[arg-type]
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
            if cast("int | None", self.head_room) is not None:  # the parser's callbacks set it (mypy cannot tell)
                self._refuse_head()
                return
            data = data[room:]

    def on_headers_complete(self) -> None:
        self.head_room = None
        if self.lane is not None and self._lane_takes():
            scope = self.scope
            scope["method"] = "POST"
            scope["path"] = self.url.decode("ascii")
            scope["raw_path"] = self.url
            scope["query_string"] = b""
            self.lane_parts = []
            return
        self._for_app(cast(Scope, self.scope))
        super().on_headers_complete()
        if self.cycle is not None:
            self.scope[CHUNK_WRITER_SCOPE] = CycleChunkWriter(self.cycle, self.corked)  # type: ignore[literal-required]

    def _lane_takes(self) -> bool:
        """Whether the request whose head just ended goes to the lane: a POST to one of its routes, HTTP/1.1
        kept alive, nothing else in flight on the connection, a body of known length within the cap."""
        assert self.lane is not None
        cycle, parser = self.cycle, self.parser
        if (
            self.url not in self.lane.paths
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
                return value.isdigit() and int(value) <= self.lane.max_body_bytes
            if name == b"transfer-encoding":
                return False
        return False

    def on_body(self, body: bytes) -> None:
        if self.lane_parts is not None:
            self.lane_parts.append(body)
            return
        super().on_body(body)

    def on_message_begin(self) -> None:
        # uvicorn's, less the scope's "asgi" and "state" entries: only a request the app serves needs them
        # (`_for_app`), and a lane request would make two dicts for nothing.
        self.url = b""
        self.expect_100_continue = False
        headers: list[tuple[bytes, bytes]] = []
        self.headers = headers
        self.scope = {  # type: ignore[typeddict-item]
            "type": "http", "http_version": "1.1", "server": self.server, "client": self.client,
            "scheme": self.scheme, "root_path": self.root_path, "headers": headers,
        }  # fmt: skip
        self.corked.cork()  # the answer's head and first body part leave together

    def _for_app(self, scope: Scope) -> None:
        """Complete a request's scope as uvicorn makes it, for the ASGI app."""
        scope["asgi"] = {"version": self.asgi_version, "spec_version": "2.3"}
        scope["state"] = self.app_state.copy()

    def on_message_complete(self) -> None:
        self.head_room = self.max_head_bytes  # a kept-alive connection's next request
        parts = self.lane_parts
        if parts is None:
            super().on_message_complete()
            return
        self.lane_parts = None
        assert self.lane is not None
        self.cycle = self.lane_cycle = LaneCycle()  # type: ignore[assignment]
        scope = cast(Scope, self.scope)
        body = parts[0] if len(parts) == 1 else b"".join(parts)
        try:
            self.lane_call = self.lane.take(self, scope, body)
        except Exception:  # a bug: raised here, the parser would answer 400 for it
            log.exception("unexpected error taking %s %s", scope["method"], scope["path"])
            self.lane_call = None
            if self.lane_cycle is not None:
                self.hand_over(scope, body, None)  # the app's own path answers it (or fails the same way, with a 500)

    # LaneHost (lane.py)
    @property
    def keep_alive(self) -> bool:
        return self.lane_cycle is None or self.lane_cycle.keep_alive

    def write(self, data: bytes) -> None:
        self.corked.write(data)

    def write_whole(self, data: bytes) -> None:
        transport = self.corked.raw  # past the cork: the answer is all there, in one piece
        if not transport.is_closing():
            transport.write(data)

    def write_paused(self) -> bool:
        return self.flow.write_paused

    def abort(self) -> None:
        self.lane_call = None
        self.corked.close()

    def answered(self) -> None:
        stand_in = self.lane_cycle
        assert stand_in is not None
        self.lane_call = self.lane_cycle = None
        stand_in.response_complete = True
        if not stand_in.keep_alive:
            self.corked.close()
        self.on_response_complete()

    def on_response_complete(self) -> None:
        self._release_writer()
        super().on_response_complete()

    def _release_writer(self) -> None:
        """The answer is complete: its scope lets go of its writer, which refers back to the request's cycle
        (a reference cycle per request, which only the garbage collector would free)."""
        cycle = self.cycle
        if isinstance(cycle, RequestResponseCycle):
            cycle.scope.pop(CHUNK_WRITER_SCOPE, None)  # type: ignore[misc]

    def hand_over(self, scope: Scope, body: bytes, resume: Resume | None) -> None:
        stand_in = self.lane_cycle
        assert stand_in is not None
        self.lane_call = self.lane_cycle = None
        if resume is not None:
            scope[RESUME_SCOPE] = resume
        self._for_app(scope)
        cycle = RequestResponseCycle(
            scope=scope,  # type: ignore[arg-type]
            transport=self.transport,
            flow=self.flow,
            logger=self.logger,
            access_logger=self.access_logger,
            access_log=self.access_log,
            default_headers=self.server_state.default_headers,
            message_event=asyncio.Event(),
            expect_100_continue=False,
            keep_alive=stand_in.keep_alive,
            on_response=self.on_response_complete,
        )
        cycle.body = bytearray(body)
        cycle.more_body = False
        scope[CHUNK_WRITER_SCOPE] = CycleChunkWriter(cycle, self.corked)
        if cast(object, self.cycle) is stand_in:
            self.cycle = cycle
        else:  # the connection's next request began meanwhile (pipelined): it waits for this one
            self.handed = cycle
        self._start_asgi_task(cycle, self.app)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self.lane_call is not None:
            self.lane_call.writable()

    def connection_lost(self, exc: Exception | None) -> None:
        call = self.lane_call
        if call is not None:
            self.lane_call = None
            call.client_gone()
        for cycle in (self.cycle, self.handed):
            if cycle is not None and not cycle.response_complete:
                task = cycle.scope.get(TASK_SCOPE)
                if isinstance(task, asyncio.Task):
                    task.cancel(CLIENT_GONE)
        self.lost()
        super().connection_lost(exc)

    def itself(self) -> Self:
        """The factory `connect_accepted_socket` takes, for a protocol made already (listener.py)."""
        return self

    def attached(self, _pair: object, error: BaseException | None) -> None:
        """The listener's `connect_accepted_socket` ended: a connection reset before it reached this protocol
        is closed without it."""
        if error is not None:
            self.lost()

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
