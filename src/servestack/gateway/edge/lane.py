"""The callback data path: OpenAI generation requests answered from the HTTP parsers' callbacks.

Why: per request, about half of the gateway's CPU went to its shell — uvicorn's request cycle and the
ASGI messages, a task, a chain of coroutines and `async with` blocks, the futures they wait on — not to
its work (docs/benchmarks.md, "Per core"). Here the server's protocol (protocol.py) hands a request whose
head qualifies (a POST to a route in `PATHS`, HTTP/1.1 kept alive, a body of known length, nothing else
in flight on the connection) to `Lane.take` with its body, and the same parts the ASGI path runs are
called directly: the request id, the key, the body parsed into an exchange (openai/routes.py), admission
(pipeline.py), a replica from the dispatcher, the request shaped for its engine (openai/attempt.py), the
engine call on a kept-alive connection whose callbacks drive the answer (relay/connection.py), token
usage, and the accounting at the end.

Only the common case is answered here: the engine's 2xx/3xx answer, whole or streamed (a stream that
breaks after it began ends with an error event, as the ASGI path ends it). Everything else is handed to
the ASGI app at the point it was reached (`LaneHost.hand_over`, the app's RESUME_SCOPE): an error to
render, a queue or a model load to wait for, and a failure before the answer began (an engine error, a
refused or reset connection, a first-byte deadline, a replica that went away), which the dispatcher
then retries on another replica or answers with, exactly as it would have. So what must be right in
those cases lives in one place; this module holds only the way to the answer and back.
"""

from __future__ import annotations

import asyncio

from servestack.asgi import Scope
from servestack.errors import BadRequest, GatewayError
from servestack.gateway.edge.lane_call import LaneCall
from servestack.gateway.edge.lane_types import LaneGateway, LaneHost, raising
from servestack.gateway.openai.routes import GENERATION_ROUTES, OpenAiApi
from servestack.gateway.relay.dispatch import Prepare
from servestack.gateway.relay.request_ids import REQUEST_ID_SCOPE

PATHS = frozenset(path.encode() for path in GENERATION_ROUTES)


class Lane:
    """Takes qualifying requests off the server's protocol (one per gateway)."""

    paths: frozenset[bytes] = PATHS  # the raw request targets it takes (no query string)

    def __init__(self, gateway: LaneGateway, api: OpenAiApi) -> None:
        self.gateway = gateway
        self.api = api
        self.relay = api.relay
        pipeline = gateway.pipeline
        self.prepare: Prepare | None = pipeline.prepare if pipeline is not None else None  # per replica tried
        self.max_body_bytes = gateway.max_body_bytes
        self.loop: asyncio.AbstractEventLoop | None = None
        self.answered = 0  # requests answered on the lane
        self.handed_over = 0  # requests it took and the ASGI app finished

    def take(self, host: LaneHost, scope: Scope, body: bytes) -> LaneCall | None:
        """Answer the request in `scope`; the call in progress, or None when it is over or handed over."""
        gateway = self.gateway
        try:
            request_id = gateway.request_ids.of(scope["headers"])
        except BadRequest:
            self.handed_over += 1
            host.hand_over(scope, body, None)  # the app refuses the id, with one of its own
            return None
        scope[REQUEST_ID_SCOPE] = request_id
        pipeline = gateway.pipeline
        try:
            if pipeline is not None and scope["path"] not in gateway.public:
                pipeline.authenticate(scope)
            exchange = self.api.exchange_for(scope, body)
            admission = pipeline.admit(exchange) if pipeline is not None else None  # a refusal is accounted for
        except GatewayError as error:
            self.handed_over += 1
            host.hand_over(scope, body, raising(error))
            return None
        if self.loop is None:
            self.loop = asyncio.get_running_loop()
        call = LaneCall(self, host, scope, body, exchange, admission)
        return call if call.begin() else None
