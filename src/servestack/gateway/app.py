"""The gateway: one ASGI app in front of every engine.

Kept as a plain ASGI callable on purpose: the request path is a dict lookup, one JSON parse of the
body (only `model` and `stream` are read), and a byte-for-byte relay unless the engine behind needs
the request in another shape (attempt.py). Every answer carries the request's id (the client's
`X-Request-Id`, or one made here: request_ids.py). Errors are GatewayError
subclasses, rendered in one place: OpenAI-style JSON, or Ollama's `{"error": ...}` on /api/*. Any
other exception is a bug: it is logged with its traceback and answered as a 500 in the same shape,
never as the server's plain text. A request whose client disconnected is cancelled by the server's
protocol (protocol.py) and ends here quietly. Keys, limits, usage, metrics and tracing wrap
`forward` when a `Pipeline` is given (pipeline.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from typing import Protocol

import orjson

from servestack.errors import BadRequest, GatewayError, InternalError, MethodNotAllowed, ModelNotFound, NotFound
from servestack.gateway.attempt import prepare_attempt
from servestack.gateway.breaker import BreakerState
from servestack.gateway.defaults import served_defaults
from servestack.gateway.dispatch import Dispatcher, Relay
from servestack.gateway.endpoint import Endpoint, EndpointState
from servestack.gateway.endpoints import EndpointTable
from servestack.gateway.exchange import Exchange
from servestack.gateway.loading import LoadGate
from servestack.gateway.model_admin import ModelAdmin
from servestack.gateway.monitor import Monitor
from servestack.gateway.ollama import OllamaApi
from servestack.gateway.ollama_models import OllamaModelsApi
from servestack.gateway.pipeline import KEY_SCOPE, Pipeline, visible
from servestack.gateway.protocol import CLIENT_GONE, TASK_SCOPE
from servestack.gateway.request_ids import REQUEST_ID_SCOPE, RequestIds, echoing
from servestack.gateway.requests import header, parse_object, read_body
from servestack.gateway.responses import Receive, Scope, Send, send_error, send_json, send_redirect
from servestack.gateway.sglang import SglangApi
from servestack.gateway.upstream import Upstream

log = logging.getLogger("servestack.gateway")

Handler = Callable[[Scope, Receive, Send], Awaitable[None]]

DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
# A service's state in /health is its most hopeful replica's, in this order.
HEALTH_ORDER = ("ready", "failing", "draining", "starting", "restarting", "unloaded", "failed", "stopped")
# For each generation route: the field that must be present besides `model`.
GENERATION_ROUTES = {"/v1/chat/completions": "messages", "/v1/completions": "prompt", "/v1/embeddings": "input"}
MODEL_ROUTE = "/v1/models/"  # + a model id, which may hold slashes (`Qwen/Qwen3-8B`)
# OpenAI routes servestack does not serve, and what to use instead.
NOT_SERVED = {
    "/v1/responses": (
        "the Responses API (/v1/responses) is not served here: the engines behind servestack are reached "
        "through /v1/chat/completions (also /v1/completions, /v1/embeddings and Ollama's /api/chat)"
    ),
}


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
        on-demand models while the controller loads them (loading.py); `models`: the running instance's model
        management (model_admin.py); `public`: paths besides /health that need no key (the console's page);
        `background`: started and stopped with the gateway; `home`: where a browser asking for `/` is sent
        (the console), while API clients get what `/` always answered."""
        self.table = table
        self.upstream = upstream or Upstream()
        self.gate = gate
        self.dispatcher = Dispatcher(table, self.upstream, gate=gate)
        self.monitor = Monitor(table, deadline_interval=self.upstream.deadline_check_every)
        self.max_body_bytes = max_body_bytes
        self.pipeline = pipeline
        self.aliases = dict(aliases or {})
        self.models = models
        self.started_at = int(time.time())
        self.public = frozenset({"/health", *public})
        self.background = background
        self.home = home
        self.request_ids = RequestIds()
        self._routes: dict[tuple[str, str], Handler] = {
            ("GET", "/health"): self._health,
            ("GET", "/v1/models"): self._models,
        }
        for path in GENERATION_ROUTES:
            self._routes[("POST", path)] = self._generate
        self._routes.update(OllamaApi(self).routes())
        self._routes.update(OllamaModelsApi(self, models).routes())
        self._routes.update(SglangApi(self).routes())
        self._routes.update(routes or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            scope[TASK_SCOPE] = asyncio.current_task()  # the server's protocol cancels it if the client leaves
            try:
                request_id, refused = self.request_ids.of(scope["headers"]), None
            except BadRequest as error:
                request_id, refused = self.request_ids.of(()), error
            scope[REQUEST_ID_SCOPE] = request_id
            send = echoing(send, request_id)
            try:
                if refused is not None:
                    raise refused
                if self.home is not None and _is_browser_home(scope):
                    await send_redirect(send, self.home)
                    return
                if self.pipeline is not None and scope["path"] not in self.public:
                    self.pipeline.authenticate(scope)
                handler = self._routes.get((scope["method"], scope["path"]))
                if handler is None and scope["method"] == "GET" and scope["path"].startswith(MODEL_ROUTE):
                    handler = self._model
                if handler is None:
                    raise self._no_route(scope)
                await handler(scope, receive, send)
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

    async def _generate(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await read_body(receive, self.max_body_bytes)
        request = parse_object(body)
        model = request.get("model")
        if not isinstance(model, str) or not model:
            raise BadRequest("you must provide a model parameter", param="model")
        required = GENERATION_ROUTES[scope["path"]]
        if required not in request:
            raise BadRequest(f"Missing required parameter: '{required}'", param=required)
        stream = request.get("stream", False)
        if not isinstance(stream, bool):
            raise BadRequest("'stream' must be true or false", param="stream")
        alias = None
        if (target := self.aliases.get(model)) is not None:  # the engine knows only its served names
            alias, model, request["model"] = model, target, target
            body = orjson.dumps(request)
        exchange = Exchange(
            path=scope["path"],
            model=model,
            stream=stream,
            body=body,
            payload=request,
            headers=scope["headers"],
            request_id=scope[REQUEST_ID_SCOPE],
        )
        exchange.key, exchange.alias = scope.get(KEY_SCOPE), alias
        await self.forward(exchange, send)

    async def forward(self, exchange: Exchange, send: Send, relay: Relay | None = None) -> None:
        """Route `exchange` to a replica and relay it there (retrying early failures elsewhere), admitted
        and accounted for by the pipeline. `relay` replaces the OpenAI relay (Ollama, SGLang /generate)."""
        if self.pipeline is None:
            await self.dispatcher.relay(exchange, send, relay=relay, prepare=self._prepare)
            return
        admission = self.pipeline.admit(exchange)  # 403/429 raise here
        try:
            if admission.waits is not None:
                await admission.turn()
            await self.dispatcher.relay(exchange, send, relay=relay, prepare=self._prepare)
        except BaseException as error:
            admission.done(error)
            raise
        admission.done(None)

    def _prepare(self, exchange: Exchange, endpoint: Endpoint) -> None:
        """Shape `exchange` for `endpoint` (its engine's dialect, stream usage), then let the pipeline account."""
        pipeline = self.pipeline
        prepare_attempt(exchange, endpoint, count_tokens=pipeline is not None and pipeline.counts_tokens)
        if pipeline is not None:
            pipeline.prepare(exchange, endpoint)

    async def _models(self, scope: Scope, receive: Receive, send: Send) -> None:
        data = [self._model_entry(name) for name in self._visible_models(scope)]
        await send_json(send, 200, {"object": "list", "data": data})

    async def _model(self, scope: Scope, receive: Receive, send: Send) -> None:
        """`GET /v1/models/{id}`: one served name or alias (404 for a name the caller cannot see)."""
        name = scope["path"].removeprefix(MODEL_ROUTE)
        if name not in self._visible_models(scope):
            raise ModelNotFound(f"The model '{name}' does not exist", param="model")
        await send_json(send, 200, self._model_entry(name))

    def _visible_models(self, scope: Scope) -> list[str]:
        key = scope.get(KEY_SCOPE)
        return [name for name in [*self.table.models(), *self.aliases] if visible(key, name, self.aliases)]

    def _model_entry(self, name: str) -> dict[str, object]:
        entry: dict[str, object] = {"id": name, "object": "model", "created": self.started_at, "owned_by": "servestack"}
        if defaults := served_defaults(self.table, self.aliases.get(name, name)):
            entry["defaults"] = dict(defaults)  # the service's `defaults:`, given to requests that omit them
        return entry

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

    def _no_route(self, scope: Scope) -> GatewayError:
        path, method = scope["path"], scope["method"]
        if path in NOT_SERVED:
            return NotFound(NOT_SERVED[path])
        if any(p == path for _, p in self._routes):
            return MethodNotAllowed(f"method {method} is not allowed on {path}")
        return NotFound(f"no route {method} {path}")


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
