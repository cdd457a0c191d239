"""The gateway's server protocol: an HTTP/1.1 connection (http_connection.py) whose OpenAI generation
requests the callback data path answers (lane.py).

A request whose head qualifies (a POST to one of the lane's routes, HTTP/1.1 kept alive, a body of
known length, nothing else in flight on the connection) is collected here and handed to the lane with
its body instead of starting an ASGI cycle. While the lane answers it, `self.cycle` is a `LaneCycle`
stand-in, so pipelining, a disconnect and a shutdown treat it as a cycle. The lane writes its answer
through the connection (`LaneHost`, lane_types.py), or hands the request back (`hand_over`), and an
ASGI cycle is made for it then, with its body already in.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Final

from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

from servestack.asgi import Scope, Send
from servestack.gateway.edge.http_connection import ConnectionSettings, HttpConnection, cancel
from servestack.gateway.edge.lane_cycle import LaneCycle, LaneRequest, LaneTaker

log = logging.getLogger("servestack.gateway")
# A request the lane hands to the app part-way: the coroutine that finishes it.
RESUME_SCOPE: Final = "servestack.resume"
Resume = Callable[[Send], Awaitable[None]]  # the rest of a request the lane hands over, run by the app


class GatewayProtocol(HttpConnection):
    """A client connection of the gateway: requests the lane takes are answered without an ASGI cycle."""

    def __init__(self, settings: ConnectionSettings) -> None:
        super().__init__(settings)
        self.lane: LaneTaker | None = settings.lane
        self.lane_parts: list[bytes] | None = None  # the body of a request the lane will take, as it arrives
        self.lane_call: LaneRequest | None = None  # the lane's request in progress
        self.lane_cycle: LaneCycle | None = None
        self.handed: RequestResponseCycle | None = None  # a lane request the app finishes

    def resume_writing(self) -> None:
        super().resume_writing()
        if self.lane_call is not None:
            self.lane_call.writable()

    def _client_gone(self) -> None:
        call = self.lane_call
        if call is not None:
            self.lane_call = None
            call.client_gone()
        cancel(self.cycle)
        cancel(self.handed)

    def _head_read(self) -> None:
        if self.lane is None or not self._lane_takes(self.lane):
            super()._head_read()
            return
        scope = self.scope
        scope["method"] = "POST"
        scope["path"] = self.url.decode("ascii")
        scope["raw_path"] = self.url
        scope["query_string"] = b""
        self.lane_parts = []

    def on_body(self, body: bytes) -> None:
        parts = self.lane_parts
        if parts is None:
            super().on_body(body)
        else:
            parts.append(body)

    def _body_read(self) -> None:
        parts = self.lane_parts
        if parts is None:
            super()._body_read()
            return
        self.lane_parts = None
        self._to_lane(parts[0] if len(parts) == 1 else b"".join(parts))

    def _lane_takes(self, lane: LaneTaker) -> bool:
        """Whether the request whose head just ended goes to the lane: a POST to one of its routes, HTTP/1.1
        kept alive, nothing else in flight on the connection, a body of known length within the cap."""
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
        lane = self.lane
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

    # LaneHost (lane_types.py)

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
