"""The gateway: one ASGI app in front of every engine.

Kept as a plain ASGI callable on purpose: the request path is a dict lookup, one JSON parse of the
body in its surface (openai/, ollama/, sglang/), and a byte-for-byte relay unless the engine behind
needs the request in another shape. Every answer carries the request's id (the client's
`X-Request-Id`, or one made here: relay/request_ids.py). Errors are GatewayError subclasses, rendered
in one place: OpenAI-style JSON, or Ollama's `{"error": ...}` on /api/*. Any other exception is a bug:
it is logged with its traceback and answered as a 500 in the same shape, never as the server's plain
text. A request whose client disconnected is cancelled by the server's protocol (protocol.py) and
ends here quietly.

Each surface resolves the request's model to its pool (`resolve`) and hands the exchange to `forward`:
keys, limits, usage, metrics and tracing wrap the dispatch when a `Pipeline` is given (pipeline.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Collection, Mapping, Sequence
from typing import Protocol

from servestack.asgi import Handler, Receive, Scope, Send, header, send_error, send_json, send_redirect
from servestack.errors import BadRequest, GatewayError, InternalError, MethodNotAllowed, ModelNotFound, NotFound
from servestack.gateway.admission.auth import visible
from servestack.gateway.admission.keys import ApiKey
from servestack.gateway.edge.http_connection import CLIENT_GONE, TASK_SCOPE
from servestack.gateway.edge.lane import Lane
from servestack.gateway.edge.pipeline import Admission, Pipeline
from servestack.gateway.edge.protocol import RESUME_SCOPE
from servestack.gateway.fleet.breaker import BreakerState
from servestack.gateway.fleet.endpoint import Endpoint, EndpointState
from servestack.gateway.fleet.names import ModelNames, Target
from servestack.gateway.fleet.table import EndpointTable
from servestack.gateway.ollama.admin import ModelAdmin
from servestack.gateway.ollama.models import OllamaModelsApi
from servestack.gateway.ollama.routes import OllamaApi
from servestack.gateway.openai.routes import OpenAiApi
from servestack.gateway.relay.dispatch import Dispatcher, Relay
from servestack.gateway.relay.exchange import Exchange
from servestack.gateway.relay.loading import LoadGate
from servestack.gateway.relay.monitor import Monitor
from servestack.gateway.relay.request_ids import REQUEST_ID_SCOPE, RequestIds, echoing
from servestack.gateway.relay.upstream import Upstream
from servestack.gateway.sglang.routes import SglangApi

log = logging.getLogger("servestack.gateway")

DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
# A service's state in /health is its most hopeful replica's, in this order.
HEALTH_ORDER = ("ready", "failing", "draining", "starting", "restarting", "unloaded", "failed", "stopped")


class Background(Protocol):
    """Work that runs beside the routes, started and stopped with the gateway (the console's traffic sampler)."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...


class Gateway:
    def __init__(
        self,
        table: EndpointTable,
        *,
        upstream: Upstream | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        pipeline: Pipeline | None = None,
        aliases: Mapping[str, str] | None = None,
        routes: Mapping[tuple[str, str], Handler] | None = None,
        gate: LoadGate | None = None,
        models: ModelAdmin | None = None,
        public: Collection[str] = (),
        background: Sequence[Background] = (),
        home: str | None = None,
    ) -> None:
        """`pipeline`: keys, limits, usage, metrics, tracing (pipeline.py); `aliases`: extra model names
        → served names; `routes`: more routes (admin, /metrics, the console); `gate`: holds requests for
        on-demand models while the controller loads them (relay/loading.py); `models`: the running instance's
        model management (ollama/admin.py); `public`: paths besides /health that need no key (the console's
        page); `background`: started and stopped with the gateway; `home`: where a browser asking for `/` is
        sent (the console), while API clients get what `/` always answered."""
        self.table = table
        self.names = ModelNames(table, aliases)
        self.upstream = upstream or Upstream()
        self.gate = gate
        self.dispatcher = Dispatcher(table, gate=gate)
        self.monitor = Monitor(table, deadline_interval=self.upstream.deadline_check_every)
        self.max_body_bytes = max_body_bytes
        self.pipeline = pipeline
        self.counts_tokens = pipeline is not None and pipeline.counts_tokens
        self.started_at = int(time.time())
        self.public = frozenset({"/health", *public})
        self.background = background
        self.home = home
        self.request_ids = RequestIds()
        openai = OpenAiApi(self)
        self._routes: dict[tuple[str, str], Handler] = {("GET", "/health"): self._health}
        keys = pipeline.keys if pipeline is not None else None
        for surface in (openai, OllamaApi(self, models), OllamaModelsApi(self, models, keys), SglangApi(self)):
            self._routes.update(surface.routes())
        self._routes.update(routes or {})
        self._prefixes = openai.prefixes()
        self.lane = Lane(self, openai)  # the callback data path for OpenAI's generation routes (lane.py)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            scope[TASK_SCOPE] = asyncio.current_task()  # the server's protocol cancels it if the client leaves
            resume = scope.get(RESUME_SCOPE)
            if resume is not None:  # the callback data path took it this far (lane.py): its id is set
                request_id, refused = scope[REQUEST_ID_SCOPE], None
            else:
                try:
                    request_id, refused = self.request_ids.of(scope["headers"]), None
                except BadRequest as error:
                    request_id, refused = self.request_ids.of(()), error
                scope[REQUEST_ID_SCOPE] = request_id
            send = echoing(send, request_id)
            try:
                if refused is not None:
                    raise refused
                if resume is not None:
                    await resume(send)
                    return
                if self.home is not None and _is_browser_home(scope):
                    await send_redirect(send, self.home)
                    return
                if self.pipeline is not None and scope["path"] not in self.public:
                    self.pipeline.authenticate(scope)
                await self._handler(scope)(scope, receive, send)
            except GatewayError as error:
                await _answer_error(scope, send, error)
            except asyncio.CancelledError as cancelled:
                if cancelled.args != (CLIENT_GONE,):
                    raise
                asyncio.current_task().uncancel()  # type: ignore[union-attr]  # nobody is left to answer
            except Exception:
                log.exception("unexpected error answering %s %s", scope.get("method"), scope.get("path"))
                await _answer_error(scope, send, InternalError("the gateway failed unexpectedly (see its log)"))
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    def _handler(self, scope: Scope) -> Handler:
        method, path = scope["method"], scope["path"]
        handler = self._routes.get((method, path))
        if handler is not None:
            return handler
        for (prefix_method, prefix), handler in self._prefixes.items():
            if method == prefix_method and path.startswith(prefix):
                return handler
        if any(p == path for _, p in self._routes):
            raise MethodNotAllowed(f"method {method} is not allowed on {path}")
        raise NotFound(f"no route {method} {path}")

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.monitor.start()
                if self.pipeline is not None:
                    await self.pipeline.start()
                for part in self.background:
                    await part.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                for part in self.background:
                    await part.stop()
                await self.monitor.stop()
                if self.pipeline is not None:
                    await self.pipeline.stop()
                await self.upstream.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def resolve(self, scope: Scope, name: str, *, stream: bool) -> Target:
        """The pool a request for model `name` goes to; a 404 (accounted for by the pipeline) when nobody serves it."""
        try:
            return self.names.resolve(name)
        except ModelNotFound as error:
            if self.pipeline is not None:
                self.pipeline.refused(scope, error, model=name, stream=stream)
            raise

    def visible_models(self, key: ApiKey | None) -> list[str]:
        return [name for name in self.names.listed() if visible(key, name, self.names.aliases)]

    async def forward(self, exchange: Exchange, send: Send, relay: Relay) -> None:
        """Route `exchange` to a replica of its pool and relay it there with `relay` (retrying early
        failures elsewhere), admitted and accounted for by the pipeline."""
        pipeline = self.pipeline
        if pipeline is None:
            await self.dispatcher.dispatch(exchange, send, relay)
            return
        admission = pipeline.admit(exchange)  # 403/429 raise here
        try:
            await self.proceed(exchange, admission, send, relay)
        except BaseException as error:
            admission.done(error)
            raise
        admission.done(None)

    async def proceed(self, exchange: Exchange, admission: Admission | None, send: Send, relay: Relay) -> None:
        """An admitted exchange's turn in its model's queue, then its dispatch (`forward` less the accounting)."""
        if admission is not None and admission.waits is not None:
            await admission.turn()
        pipeline = self.pipeline
        await self.dispatcher.dispatch(exchange, send, relay, prepare=pipeline.prepare if pipeline else None)

    async def _health(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Each service's state (its most hopeful replica's); 200 while any service can answer, else 503.

        `status` is `ok` when every service is ready (or unloaded, on demand), `degraded` when some are not,
        `unavailable` when none is (or the stack has none): a load balancer in front takes the gateway out only then.
        """
        services: dict[str, str] = {}
        for endpoint in self.table.endpoints():
            state = _health_state(endpoint)
            known = services.get(endpoint.service)
            if known is None or HEALTH_ORDER.index(state) < HEALTH_ORDER.index(known):
                services[endpoint.service] = state
        # An unloaded on-demand service answers too: its first request loads it.
        ready = sum(state in ("ready", "unloaded") for state in services.values())
        status = "ok" if services and ready == len(services) else "degraded" if ready else "unavailable"
        await send_json(send, 200 if ready else 503, {"status": status, "services": services})


def _is_browser_home(scope: Scope) -> bool:
    """A browser opening the gateway's address: `GET /` asking for HTML (API clients never do)."""
    return scope["method"] == "GET" and scope["path"] == "/" and b"text/html" in (header(scope, b"accept") or b"")


async def _answer_error(scope: Scope, send: Send, error: GatewayError) -> None:
    """Send `error` as the answer, unless the answer has already started (the server refuses a second start)."""
    with contextlib.suppress(RuntimeError):
        await send_error(send, error, ollama=scope["path"].startswith("/api/"))


def _health_state(endpoint: Endpoint) -> str:
    if endpoint.vitals.draining:
        return "draining"
    if endpoint.state is EndpointState.READY and endpoint.vitals.breaker.state is BreakerState.OPEN:
        return "failing"  # the engine runs, but its requests fail or it stopped answering
    return endpoint.state.value
