"""What the callback data path (lane.py, lane_call.py) uses of the gateway app, of its lane, and of the
client connection it answers on, typed here so that none of those modules imports the others back; and
the `Resume` of a request answered with an error."""

from __future__ import annotations

import asyncio
from typing import Protocol

from servestack.asgi import Scope, Send
from servestack.errors import GatewayError
from servestack.gateway.edge.pipeline import Admission, Pipeline
from servestack.gateway.edge.protocol import Resume
from servestack.gateway.openai.relay import OpenAiRelay
from servestack.gateway.relay.dispatch import Dispatcher, Prepare, Relay
from servestack.gateway.relay.exchange import Exchange
from servestack.gateway.relay.request_ids import RequestIds
from servestack.gateway.relay.upstream import Upstream


class LaneGateway(Protocol):
    """What the lane uses of the gateway app (edge/app.py's Gateway)."""

    request_ids: RequestIds
    pipeline: Pipeline | None
    public: frozenset[str]
    max_body_bytes: int
    dispatcher: Dispatcher
    upstream: Upstream

    async def proceed(self, exchange: Exchange, admission: Admission | None, send: Send, relay: Relay) -> None: ...


class LaneState(Protocol):
    """What a call uses of its lane (lane.py's Lane)."""

    gateway: LaneGateway
    relay: OpenAiRelay
    prepare: Prepare | None
    loop: asyncio.AbstractEventLoop | None
    answered: int
    handed_over: int


class LaneHost(Protocol):
    """The client connection a lane request is answered on (edge/protocol.py)."""

    @property
    def keep_alive(self) -> bool:
        """False once the server is shutting down: the answer closes the connection."""
        ...

    def write(self, data: bytes) -> None:
        """Part of the answer (what one event-loop tick writes leaves in one send())."""

    def write_whole(self, data: bytes) -> None:
        """A whole answer, sent at once."""

    def write_paused(self) -> bool:
        """The client is not reading what was written: hold the engine back."""
        ...

    def abort(self) -> None:
        """Close the connection: an answer that began cannot be finished."""

    def answered(self) -> None:
        """The answer is complete: the connection takes its next request."""

    def hand_over(self, scope: Scope, body: bytes, resume: Resume | None) -> None:
        """Serve the request with the ASGI app: from `resume` on (the app's RESUME_SCOPE), or, when None, whole."""


def raising(error: GatewayError) -> Resume:
    """The rest of a request that is answered with `error`."""

    async def answer(send: Send) -> None:
        raise error

    return answer
