"""Ollama's API on the gateway: /api/chat, /api/generate, /api/tags, /api/ps, /api/show, /api/version
(model management, /api/pull, /api/delete, /api/copy: ollama_models.py).

Generation routes are translated to the engines' OpenAI API (ollama_format.py) and go through the
same replica choice, keys, limits and accounting as OpenAI requests (`Gateway.forward`); the
answers are translated back (ollama_relay.py). Errors on /api/* are Ollama's `{"error": "..."}`
(rendered at the edge). Ollama clients like to add `:latest` to names: it is accepted.

On-demand services follow Ollama's loading conventions (loading.py): a request's `keep_alive` sets how
long its model stays loaded after it, `/api/generate` (or `/api/chat` with no messages) without a prompt
loads the model, with `keep_alive: 0` unloads it, and `/api/ps` lists what is loaded with its memory
and `expires_at`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from servestack import __version__
from servestack.errors import BadRequest, ModelNotFound
from servestack.gateway.dispatch import GatewayCore
from servestack.gateway.exchange import Exchange
from servestack.gateway.loading import keep_alive_seconds, on_demand_service
from servestack.gateway.ollama_format import (
    chat_request,
    generate_request,
    iso,
    model_entry,
    now_iso,
    resolve_name,
)
from servestack.gateway.ollama_models import show_answer
from servestack.gateway.ollama_relay import Kind, OllamaRelay
from servestack.gateway.pipeline import KEY_SCOPE, visible
from servestack.gateway.request_ids import REQUEST_ID_SCOPE
from servestack.gateway.requests import read_json
from servestack.gateway.responses import Receive, Scope, Send, send_bytes, send_json

Handler = Callable[[Scope, Receive, Send], Awaitable[None]]
# The Ollama API version servestack speaks (clients check it to enable features), not servestack's own.
OLLAMA_API_VERSION = "0.12.0"
FAR_FUTURE = 4102444800.0  # 2100-01-01: engines behind servestack are not unloaded on a timer


class OllamaApi:
    def __init__(self, gateway: GatewayCore) -> None:
        self.gateway = gateway

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
            endpoint = ready.get(self.gateway.aliases.get(name, name))
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
        served, _ = self._resolve(name)
        engines = self._names(scope)
        if served not in engines:
            raise ModelNotFound(f"model '{name}' not found")
        entry = model_entry(name, engines[served], self.gateway.started_at)
        answer = show_answer(name, served, engines[served], entry, self.gateway.models, self.gateway.table)
        await send_json(send, 200, answer)

    async def _chat(self, scope: Scope, receive: Receive, send: Send) -> None:
        request, name, served, alias, stream = await self._open(scope, receive)
        if request.get("messages") == []:  # Ollama's way to load (or, with keep_alive 0, unload) a model
            await self._load_or_unload(send, request, name, served, {"message": {"role": "assistant", "content": ""}})
            return
        payload = chat_request(request, served, stream)
        await self._forward(scope, send, "/api/chat", payload, ("chat", "/v1/chat/completions"), name, alias, request)

    async def _generate(self, scope: Scope, receive: Receive, send: Send) -> None:
        request, name, served, alias, stream = await self._open(scope, receive)
        if not request.get("prompt") and not request.get("images"):
            await self._load_or_unload(send, request, name, served, {"response": ""})
            return
        path, payload = generate_request(request, served, stream)
        await self._forward(scope, send, "/api/generate", payload, ("generate", path), name, alias, request)

    async def _load_or_unload(
        self, send: Send, request: dict[str, Any], name: str, served: str, empty: dict[str, Any]
    ) -> None:
        """An empty prompt loads the model (answered once it is loaded); with `keep_alive: 0` it unloads it."""
        keep_alive = keep_alive_seconds(request["keep_alive"]) if request.get("keep_alive") is not None else None
        pool = self.gateway.table.pool(served)  # unknown → 404
        gate = self.gateway.gate
        reason = "unload" if keep_alive == 0 else "load"
        if gate is None or not pool.on_demand:
            self.gateway.table.pick(served)  # not ready → 503; always services are never unloaded
        elif reason == "unload":
            await gate.loader.unload(on_demand_service(pool))
        else:
            await gate.load(pool, served, keep_alive)
        done = {"model": name, "created_at": now_iso(), **empty, "done": True, "done_reason": reason}
        await send_json(send, 200, done)

    async def _embed(self, scope: Scope, receive: Receive, send: Send) -> None:
        request, name, served, alias, _ = await self._open(scope, receive)
        text = request.get("input")
        if not isinstance(text, str | list):
            raise BadRequest("'input' must be a string or a list of strings", param="input")
        payload: dict[str, Any] = {"model": served, "input": text}
        if isinstance(request.get("dimensions"), int):
            payload["dimensions"] = request["dimensions"]
        await self._forward(scope, send, "/api/embed", payload, ("embed", "/v1/embeddings"), name, alias)

    async def _embeddings(self, scope: Scope, receive: Receive, send: Send) -> None:
        request, name, served, alias, _ = await self._open(scope, receive)
        payload = {"model": served, "input": request.get("prompt") or ""}
        route: tuple[Kind, str] = ("embeddings", "/v1/embeddings")
        await self._forward(scope, send, "/api/embeddings", payload, route, name, alias)

    async def _open(self, scope: Scope, receive: Receive) -> tuple[dict[str, Any], str, str, str | None, bool]:
        """(request, name as sent, served model, alias or None, stream) of a generation request."""
        request = await read_json(receive, self.gateway.max_body_bytes)
        name = request.get("model")
        if not isinstance(name, str) or not name:
            raise BadRequest("model is required", param="model")
        stream = request.get("stream", True)  # Ollama streams unless told not to
        if not isinstance(stream, bool):
            raise BadRequest("'stream' must be true or false", param="stream")
        if request.get("keep_alive") is not None:
            keep_alive_seconds(request["keep_alive"])  # a 400 for a shape Ollama would refuse
        served, alias = self._resolve(name)
        return request, name, served, alias, stream

    async def _forward(
        self,
        scope: Scope,
        send: Send,
        route: str,
        payload: dict[str, Any],
        target: tuple[Kind, str],
        name: str,
        alias: str | None,
        request: dict[str, Any] | None = None,
    ) -> None:
        kind, upstream_path = target
        stream = bool(payload.get("stream", False))
        exchange = Exchange(
            path=route,
            model=str(payload["model"]),
            stream=stream,
            body=b"",  # the translation is encoded for each replica tried (attempt.py)
            payload=payload,
            headers=scope["headers"],
            request_id=scope[REQUEST_ID_SCOPE],
            upstream_path=upstream_path,
            key=scope.get(KEY_SCOPE),
            alias=alias,
        )
        if request is not None and request.get("keep_alive") is not None:
            exchange.keep_alive = keep_alive_seconds(request["keep_alive"])
        relay = OllamaRelay(self.gateway.upstream, kind, name)
        await self.gateway.forward(exchange, send, relay=relay)

    def _resolve(self, name: str) -> tuple[str, str | None]:
        return resolve_name(name, self.gateway.table.models(), self.gateway.aliases)

    def _names(self, scope: Scope) -> dict[str, str]:
        """Every name the caller may use (served names and aliases) → the format of the model behind it."""
        engines = {m: e.model_format for e in self.gateway.table.endpoints() for m in e.models}
        for alias, target in self.gateway.aliases.items():
            if target in engines:
                engines[alias] = engines[target]
        key, aliases = scope.get(KEY_SCOPE), self.gateway.aliases
        return {name: engine for name, engine in engines.items() if visible(key, name, aliases)}
