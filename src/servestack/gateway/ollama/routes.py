"""Ollama's API on the gateway: /api/chat, /api/generate, /api/tags, /api/ps, /api/show, /api/version
(model management, /api/pull, /api/delete, /api/copy: models.py).

Generation routes are translated to the engines' OpenAI API (format.py) and go through the same
replica choice, keys, limits and accounting as OpenAI requests (`GatewayCore.forward`); the answers
are translated back (relay.py). Errors on /api/* are Ollama's `{"error": "..."}` (rendered at the
edge). Ollama clients like to add `:latest` to names: the gateway's name resolution accepts it.

On-demand services follow Ollama's loading conventions (relay/loading.py): a request's `keep_alive` sets how
long its model stays loaded after it, `/api/generate` (or `/api/chat` with no messages) without a prompt
loads the model, with `keep_alive: 0` unloads it, and `/api/ps` lists what is loaded with its memory
and `expires_at`.
"""

from __future__ import annotations

from typing import Any

from servestack import __version__
from servestack.asgi import Handler, Receive, Scope, Send, read_json, send_bytes, send_json
from servestack.errors import BadRequest, ModelNotFound
from servestack.gateway.admission.auth import KEY_SCOPE
from servestack.gateway.fleet.names import Target
from servestack.gateway.ollama.admin import ModelAdmin
from servestack.gateway.ollama.format import (
    chat_request,
    generate_request,
    iso,
    keep_alive_seconds,
    model_entry,
    now_iso,
)
from servestack.gateway.ollama.models import show_answer
from servestack.gateway.ollama.relay import Kind, OllamaRelay
from servestack.gateway.relay.dispatch import GatewayCore
from servestack.gateway.relay.exchange import Exchange
from servestack.gateway.relay.loading import on_demand_service

# The Ollama API version servestack speaks (clients check it to enable features), not servestack's own.
OLLAMA_API_VERSION = "0.12.0"
FAR_FUTURE = 4102444800.0  # 2100-01-01: engines behind servestack are not unloaded on a timer


class OllamaApi:
    def __init__(self, gateway: GatewayCore, admin: ModelAdmin | None = None) -> None:
        self.gateway = gateway
        self.admin = admin

    def routes(self) -> dict[tuple[str, str], Handler]:
        return {
            ("GET", "/"): self._root,
            ("GET", "/api/version"): self._version,
            ("GET", "/api/tags"): self._tags,
            ("GET", "/api/ps"): self._ps,
            ("POST", "/api/show"): self._show,
            ("POST", "/api/chat"): self._chat,
            ("POST", "/api/generate"): self._generate,
            ("POST", "/api/embed"): self._embed,
            ("POST", "/api/embeddings"): self._embeddings,
        }

    async def _root(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_bytes(send, 200, b"Ollama is running", [(b"content-type", b"text/plain; charset=utf-8")])

    async def _version(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_json(send, 200, {"version": OLLAMA_API_VERSION, "servestack": __version__})

    async def _tags(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = self.gateway.started_at
        names = self._names(scope)
        await send_json(send, 200, {"models": [model_entry(n, e, started) for n, e in names.items()]})

    async def _ps(self, scope: Scope, receive: Receive, send: Send) -> None:
        ready = {m: e for e in self.gateway.table.endpoints() if e.ready for m in e.models}
        gate = self.gateway.gate
        models = []
        for name, engine in self._names(scope).items():
            endpoint = ready.get(self.gateway.names.served(name)[0])
            if endpoint is None:
                continue
            residence = gate.loader.residence(endpoint.service) if gate is not None else None
            expires = residence.expires_at if residence is not None else None
            entry = model_entry(name, engine, self.gateway.started_at)
            entry["size"] = residence.size_bytes if residence is not None else 0
            entry["expires_at"] = iso(expires if expires is not None else FAR_FUTURE)
            entry["size_vram"] = residence.vram_bytes if residence is not None else 0
            models.append(entry)
        await send_json(send, 200, {"models": models})

    async def _show(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = await read_json(receive, self.gateway.max_body_bytes)
        name = request.get("model") or request.get("name")
        if not isinstance(name, str) or not name:
            raise BadRequest("model is required", param="model")
        served, _ = self.gateway.names.served(name)
        engines = self._names(scope)
        if served not in engines:
            raise ModelNotFound(f"model '{name}' not found")
        entry = model_entry(name, engines[served], self.gateway.started_at)
        answer = show_answer(name, served, engines[served], entry, self.admin, self.gateway.table)
        await send_json(send, 200, answer)

    async def _chat(self, scope: Scope, receive: Receive, send: Send) -> None:
        request, name, target, stream = await self._open(scope, receive)
        if request.get("messages") == []:  # Ollama's way to load (or, with keep_alive 0, unload) a model
            await self._load_or_unload(send, request, name, target, {"message": {"role": "assistant", "content": ""}})
            return
        payload = chat_request(request, target.pool.model, stream)
        await self._forward(scope, send, payload, ("chat", "/v1/chat/completions"), name, target, request)

    async def _generate(self, scope: Scope, receive: Receive, send: Send) -> None:
        request, name, target, stream = await self._open(scope, receive)
        if not request.get("prompt") and not request.get("images"):
            await self._load_or_unload(send, request, name, target, {"response": ""})
            return
        path, payload = generate_request(request, target.pool.model, stream)
        await self._forward(scope, send, payload, ("generate", path), name, target, request)

    async def _load_or_unload(
        self, send: Send, request: dict[str, Any], name: str, target: Target, empty: dict[str, Any]
    ) -> None:
        """An empty prompt loads the model (answered once it is loaded); with `keep_alive: 0` it unloads it."""
        keep_alive = keep_alive_seconds(request["keep_alive"]) if request.get("keep_alive") is not None else None
        pool, gate = target.pool, self.gateway.gate
        reason = "unload" if keep_alive == 0 else "load"
        if gate is None or not pool.on_demand:
            pool.pick()  # not ready → 503; always services are never unloaded
        elif reason == "unload":
            await gate.loader.unload(on_demand_service(pool))
        else:
            await gate.load(pool, pool.model, keep_alive)
        done = {"model": name, "created_at": now_iso(), **empty, "done": True, "done_reason": reason}
        await send_json(send, 200, done)

    async def _embed(self, scope: Scope, receive: Receive, send: Send) -> None:
        request, name, target, _ = await self._open(scope, receive)
        text = request.get("input")
        if not isinstance(text, str | list):
            raise BadRequest("'input' must be a string or a list of strings", param="input")
        payload: dict[str, Any] = {"model": target.pool.model, "input": text}
        if isinstance(request.get("dimensions"), int):
            payload["dimensions"] = request["dimensions"]
        await self._forward(scope, send, payload, ("embed", "/v1/embeddings"), name, target)

    async def _embeddings(self, scope: Scope, receive: Receive, send: Send) -> None:
        request, name, target, _ = await self._open(scope, receive)
        payload = {"model": target.pool.model, "input": request.get("prompt") or ""}
        route: tuple[Kind, str] = ("embeddings", "/v1/embeddings")
        await self._forward(scope, send, payload, route, name, target)

    async def _open(self, scope: Scope, receive: Receive) -> tuple[dict[str, Any], str, Target, bool]:
        """(request, name as sent, where it goes, stream) of a generation request."""
        request = await read_json(receive, self.gateway.max_body_bytes)
        name = request.get("model")
        if not isinstance(name, str) or not name:
            raise BadRequest("model is required", param="model")
        stream = request.get("stream", True)  # Ollama streams unless told not to
        if not isinstance(stream, bool):
            raise BadRequest("'stream' must be true or false", param="stream")
        if request.get("keep_alive") is not None:
            keep_alive_seconds(request["keep_alive"])  # a 400 for a shape Ollama would refuse
        return request, name, self.gateway.resolve(scope, name, stream=stream), stream

    async def _forward(
        self,
        scope: Scope,
        send: Send,
        payload: dict[str, Any],
        route: tuple[Kind, str],
        name: str,
        target: Target,
        request: dict[str, Any] | None = None,
    ) -> None:
        kind, upstream_path = route
        exchange = Exchange.of(
            scope,
            target,
            stream=bool(payload.get("stream", False)),
            body=b"",  # the translation is encoded for each replica tried (openai/attempt.py)
            payload=payload,
            upstream_path=upstream_path,
        )
        if request is not None and request.get("keep_alive") is not None:
            exchange.keep_alive = keep_alive_seconds(request["keep_alive"])
        await self.gateway.forward(exchange, send, OllamaRelay(self.gateway.upstream, kind, name))

    def _names(self, scope: Scope) -> dict[str, str]:
        """Every name the caller may use (served names and aliases) → the format of the model behind it."""
        formats = {m: e.model_format for e in self.gateway.table.endpoints() for m in e.models}
        visible = self.gateway.visible_models(scope.get(KEY_SCOPE))
        return {name: formats[served] for name in visible if (served := self.gateway.names.served(name)[0]) in formats}
