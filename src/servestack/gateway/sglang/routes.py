"""SGLang's native `POST /generate`, passed through to SGLang services untouched.

SGLang's own body has no model (`{"text" | "input_ids", "sampling_params", "stream", ...}`): a
`model` field, when present, picks the service; without one the stack must have exactly one SGLang
service. The body and the answer (JSON, or SSE with `meta_info` token counts) are relayed byte for
byte; keys, limits and accounting apply as on every route.
"""

from __future__ import annotations

from servestack.asgi import Handler, Receive, Scope, Send, parse_object, read_body
from servestack.errors import BadRequest
from servestack.gateway.fleet.endpoint import Endpoint
from servestack.gateway.openai.relay import OpenAiRelay
from servestack.gateway.relay.dispatch import GatewayCore
from servestack.gateway.relay.exchange import Exchange

ROUTE = "/generate"


class SglangApi:
    def __init__(self, gateway: GatewayCore) -> None:
        self.gateway = gateway
        self._bytes = OpenAiRelay(gateway.upstream, counts_tokens=gateway.counts_tokens)  # relayed as they come

    def routes(self) -> dict[tuple[str, str], Handler]:
        return {("POST", ROUTE): self._generate}

    async def _generate(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await read_body(receive, self.gateway.max_body_bytes)
        request = parse_object(body)
        name = request.get("model")
        if name is None:
            name = self._only_model()
        if not isinstance(name, str) or not name:
            raise BadRequest("'model' must be a served model name", param="model")
        stream = request.get("stream", False)
        if not isinstance(stream, bool):
            raise BadRequest("'stream' must be true or false", param="stream")
        target = self.gateway.resolve(scope, name, stream=stream)
        exchange = Exchange.of(scope, target, stream=stream, body=body, payload=request)
        await self.gateway.forward(exchange, send, self._relay)

    async def _relay(self, exchange: Exchange, endpoint: Endpoint, send: Send) -> None:
        if ROUTE not in endpoint.native_routes:
            raise BadRequest(
                f"/generate is SGLang's native API; model '{exchange.model}' is served by "
                f"{endpoint.engine or 'another'} engine: use /v1/completions",
                param="model",
            )
        await self._bytes(exchange, endpoint, send)

    def _only_model(self) -> str:
        services = {
            e.service: e.models[0] for e in self.gateway.table.endpoints() if ROUTE in e.native_routes and e.models
        }
        if len(services) == 1:
            return next(iter(services.values()))
        if not services:
            raise BadRequest("/generate is SGLang's native API and no SGLang service runs here")
        raise BadRequest(f"several SGLang services run here ({', '.join(sorted(services))}): say which with 'model'")
