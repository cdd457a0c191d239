"""The OpenAI API on the gateway: /v1/chat/completions, /v1/completions, /v1/embeddings, /v1/models.

A generation request's body is parsed once (orjson); only `model`, `stream` and the route's required
field are checked here. The model name is resolved to its pool before anything else (an alias is
replaced by the served name it stands for, since the engine knows only those), and the request goes
through the gateway's admission and replica choice (`GatewayCore.forward`), relayed byte for byte
(relay.py) unless the engine behind needs it in another shape (attempt.py).
"""

from __future__ import annotations

import orjson

from servestack.asgi import Handler, Receive, Scope, Send, parse_object, read_body, send_json
from servestack.errors import BadRequest, ModelNotFound, NotFound
from servestack.gateway.admission.auth import KEY_SCOPE
from servestack.gateway.openai.defaults import served_defaults
from servestack.gateway.openai.relay import OpenAiRelay
from servestack.gateway.relay.dispatch import GatewayCore
from servestack.gateway.relay.exchange import Exchange

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


class OpenAiApi:
    def __init__(self, gateway: GatewayCore) -> None:
        self.gateway = gateway
        self.relay = OpenAiRelay(gateway.upstream, counts_tokens=gateway.counts_tokens)

    def routes(self) -> dict[tuple[str, str], Handler]:
        routes: dict[tuple[str, str], Handler] = {("GET", "/v1/models"): self._models}
        for path in GENERATION_ROUTES:
            routes[("POST", path)] = self._generate
        for path in NOT_SERVED:
            routes[("GET", path)] = routes[("POST", path)] = self._not_served
        return routes

    def prefixes(self) -> dict[tuple[str, str], Handler]:
        """Routes matched by the start of the path."""
        return {("GET", MODEL_ROUTE): self._model}

    async def _generate(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await read_body(receive, self.gateway.max_body_bytes)
        await self.gateway.forward(self.exchange_for(scope, body), send, self.relay)

    def exchange_for(self, scope: Scope, body: bytes) -> Exchange:
        """The exchange of a generation request with `body`, its model resolved to its pool (400, 404)."""
        request = parse_object(body)
        name = request.get("model")
        if not isinstance(name, str) or not name:
            raise BadRequest("you must provide a model parameter", param="model")
        required = GENERATION_ROUTES[scope["path"]]
        if required not in request:
            raise BadRequest(f"Missing required parameter: '{required}'", param=required)
        stream = request.get("stream", False)
        if not isinstance(stream, bool):
            raise BadRequest("'stream' must be true or false", param="stream")
        target = self.gateway.resolve(scope, name, stream=stream)
        if target.alias is not None:  # the engine knows only its served names
            request["model"] = target.pool.model
            body = orjson.dumps(request)
        return Exchange.of(scope, target, stream=stream, body=body, payload=request)

    async def _models(self, scope: Scope, receive: Receive, send: Send) -> None:
        data = [self._model_entry(name) for name in self.gateway.visible_models(scope.get(KEY_SCOPE))]
        await send_json(send, 200, {"object": "list", "data": data})

    async def _model(self, scope: Scope, receive: Receive, send: Send) -> None:
        """`GET /v1/models/{id}`: one served name or alias (404 for a name the caller cannot see)."""
        name = scope["path"].removeprefix(MODEL_ROUTE)
        if name not in self.gateway.visible_models(scope.get(KEY_SCOPE)):
            raise ModelNotFound(f"The model '{name}' does not exist", param="model")
        await send_json(send, 200, self._model_entry(name))

    async def _not_served(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise NotFound(NOT_SERVED[scope["path"]])

    def _model_entry(self, name: str) -> dict[str, object]:
        entry: dict[str, object] = {
            "id": name,
            "object": "model",
            "created": self.gateway.started_at,
            "owned_by": "servestack",
        }
        if defaults := served_defaults(self.gateway.table, self.gateway.names.served(name)[0]):
            entry["defaults"] = dict(defaults)  # the service's `defaults:`, given to requests that omit them
        return entry
