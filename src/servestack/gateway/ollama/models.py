"""Ollama's model-management API on the gateway: /api/pull, /api/delete, /api/copy, and /api/show's answer.

    POST   /api/pull    {"model", "stream"?}       download weights (a served name, ORG/NAME[:QUANT], a short
                                                   name), streamed as Ollama's progress lines
    DELETE /api/delete  {"model"}                  an alias /api/copy added, or a model's files on disk
    POST   /api/copy    {"source", "destination"}  a new alias of a served name (kept across restarts)
    POST   /api/create, /api/push                  501: not supported, saying what to do instead

Pulling and deleting need the running instance (`ModelAdmin`, admin.py) and, when the stack turns
keys on, the admin key. servestack serves the services its stack file lists: a pulled model is on disk,
ready for a service to name it; deleting a served name is refused (it is the stack file's).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Mapping
from typing import Any, Protocol

import orjson

from servestack.asgi import Handler, Receive, Scope, Send, read_json, send_bytes, send_json
from servestack.errors import (
    AdminKeyRequired,
    AuthenticationFailed,
    BadRequest,
    Conflict,
    GatewayError,
    ModelNotFound,
    NotSupported,
    PermissionDenied,
)
from servestack.gateway.admission.auth import KEY_SCOPE, KeyRing
from servestack.gateway.fleet.names import ModelNames
from servestack.gateway.fleet.table import EndpointTable
from servestack.gateway.ollama.admin import ModelAdmin, ModelDetails, PullUpdate
from servestack.gateway.openai.defaults import ollama_parameters, served_defaults

log = logging.getLogger("servestack.gateway")

NDJSON = [(b"content-type", b"application/x-ndjson")]
NO_INSTANCE = "model management needs the running servestack instance (`servestack up`)"
NOT_SUPPORTED = {
    "/api/create": (
        "/api/create is not supported: servestack serves the models its stack file lists; add a service there "
        "(a Modelfile's FROM is its `model:`, its PARAMETERs its `defaults:`)"
    ),
    "/api/push": "/api/push is not supported: servestack does not publish models (upload them with `hf upload`)",
}


class ModelRoutesHost(Protocol):
    """What these routes use of the gateway app."""

    table: EndpointTable
    names: ModelNames
    max_body_bytes: int


class OllamaModelsApi:
    def __init__(self, gateway: ModelRoutesHost, admin: ModelAdmin | None, keys: KeyRing | None) -> None:
        """`keys`: the gateway's key ring (None when keys are off); changing models needs its admin key."""
        self.gateway = gateway
        self.admin = admin
        self.keys = keys
        self.added: dict[str, str] = {}  # aliases /api/copy added (the rest of gateway.names.aliases are the stack's)
        self._pulls: set[asyncio.Task[None]] = set()  # pulls whose client left run on; kept from the collector
        if admin is not None:
            saved = {a: t for a, t in admin.saved_aliases().items() if a not in gateway.names.aliases}
            gateway.names.aliases.update(saved)
            self.added.update(saved)

    def routes(self) -> dict[tuple[str, str], Handler]:
        return {
            ("POST", "/api/pull"): self._pull,
            ("DELETE", "/api/delete"): self._delete,
            ("POST", "/api/copy"): self._copy,
            ("POST", "/api/create"): self._not_supported,
            ("POST", "/api/push"): self._not_supported,
        }

    async def _pull(self, scope: Scope, receive: Receive, send: Send) -> None:
        admin = self._admin(scope)
        request = await read_json(receive, self.gateway.max_body_bytes)
        name = _model_name(request)
        stream = request.get("stream", True)
        if not isinstance(stream, bool):
            raise BadRequest("'stream' must be true or false", param="stream")
        updates: asyncio.Queue[PullUpdate | None] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        def report(update: PullUpdate) -> None:
            loop.call_soon_threadsafe(updates.put_nowait, update)

        task = asyncio.ensure_future(admin.pull(name, report))
        self._pulls.add(task)
        task.add_done_callback(self._pull_finished)
        task.add_done_callback(lambda _: updates.put_nowait(None))  # after every report: they precede its end
        if not stream:
            await asyncio.shield(task)  # a GatewayError answers with its status
            await send_json(send, 200, {"status": "success"})
            return
        await send({"type": "http.response.start", "status": 200, "headers": NDJSON})
        await _line(send, {"status": "pulling manifest"})
        while (update := await updates.get()) is not None:
            await _line(send, {k: v for k, v in dataclasses.asdict(update).items() if v is not None})
        error = task.exception()
        await _line(send, {"error": error.message} if isinstance(error, GatewayError) else {"status": "success"})
        await send({"type": "http.response.body", "body": b""})

    def _pull_finished(self, task: asyncio.Task[None]) -> None:
        self._pulls.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None and not isinstance(error, GatewayError):
            log.error("a pull failed unexpectedly", exc_info=error)

    async def _delete(self, scope: Scope, receive: Receive, send: Send) -> None:
        admin = self._admin(scope)
        name = _model_name(await read_json(receive, self.gateway.max_body_bytes))
        name = self._known(name)
        if name in self.added:
            del self.added[name], self.gateway.names.aliases[name]
            admin.save_aliases(self.added)
        elif name in self.gateway.names.aliases:
            raise BadRequest(f"'{name}' is an alias the stack file defines (gateway.names.aliases): remove it there")
        elif name in self.gateway.table.models():
            raise Conflict(
                f"'{name}' is a served name of the running stack: servestack serves what its stack file lists "
                "(remove the service there; `servestack rm` removes a model's files once no service runs it)"
            )
        else:
            await admin.delete(name)
        await send_bytes(send, 200, b"", [])

    async def _copy(self, scope: Scope, receive: Receive, send: Send) -> None:
        admin = self._admin(scope)
        request = await read_json(receive, self.gateway.max_body_bytes)
        source, destination = request.get("source"), request.get("destination")
        if not isinstance(source, str) or not source or not isinstance(destination, str) or not destination:
            raise BadRequest("copy needs a 'source' and a 'destination' model name", param="source")
        served, _ = self.gateway.names.served(source)
        if served not in self.gateway.table.models():
            raise ModelNotFound(f"model '{source}' not found")
        destination = destination.removesuffix(":latest")
        if destination in self.gateway.table.models() or destination in set(self.gateway.names.aliases) - set(
            self.added
        ):
            raise BadRequest(f"'{destination}' is already a name of the stack: choose a new one", param="destination")
        self.gateway.names.aliases[destination] = self.added[destination] = served
        admin.save_aliases(self.added)
        await send_bytes(send, 200, b"", [])

    async def _not_supported(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise NotSupported(NOT_SUPPORTED[scope["path"]])

    def _admin(self, scope: Scope) -> ModelAdmin:
        """The instance's model admin, for a caller allowed to change models (the admin key when keys are on)."""
        keys = self.keys
        if keys is not None and keys.required:
            key = scope.get(KEY_SCOPE)
            if not keys.admin_enabled:
                raise PermissionDenied("Managing models needs the admin key: set SERVESTACK_ADMIN_KEY for the gateway")
            if key is None:
                raise AuthenticationFailed("Managing models needs the admin key")
            if not key.admin:
                raise AdminKeyRequired("Managing models needs the admin key (SERVESTACK_ADMIN_KEY), not a client key")
        if self.admin is None:
            raise NotSupported(NO_INSTANCE)
        return self.admin

    def _known(self, name: str) -> str:
        """`name` without an Ollama `:latest` the stack does not know it with."""
        served, alias = self.gateway.names.served(name)
        return alias if alias is not None else served


def show_answer(
    name: str, served: str, model_format: str, entry: Mapping[str, Any], admin: ModelAdmin | None, table: EndpointTable
) -> dict[str, Any]:
    """/api/show's answer for `name` (served as `served`): details from the running stack, its defaults."""
    details = admin.details(served) if admin is not None else None
    defaults = ollama_parameters(served_defaults(table, served))
    source = details.source if details is not None else served
    modelfile = [f"# served by servestack through {model_format or 'an engine'}", f"FROM {source}"]
    modelfile += [f"PARAMETER {key} {value}" for key, value in defaults]
    return {
        "modelfile": "\n".join(modelfile) + "\n",
        "parameters": "\n".join(f"{key:<30} {value}" for key, value in defaults),
        "template": "",
        "details": {**entry["details"], **_details(details)},
        "model_info": _model_info(details),
        "capabilities": ["completion"],
        "modified_at": entry["modified_at"],
    }


def _details(details: ModelDetails | None) -> dict[str, Any]:
    if details is None:
        return {}
    found = {
        "format": details.format,
        "family": details.family,
        "families": [details.family] if details.family else None,
        "parameter_size": details.parameter_size,
        "quantization_level": details.quantization_level,
    }
    return {key: value for key, value in found.items() if value}


def _model_info(details: ModelDetails | None) -> dict[str, Any]:
    if details is None:
        return {}
    info: dict[str, Any] = {"general.architecture": details.family} if details.family else {}
    if details.parameter_count is not None:
        info["general.parameter_count"] = details.parameter_count
    if details.context_length is not None and details.family:
        info[f"{details.family}.context_length"] = details.context_length
    return info


def _model_name(request: Mapping[str, Any]) -> str:
    name = request.get("model") or request.get("name")
    if not isinstance(name, str) or not name:
        raise BadRequest("model is required", param="model")
    return name


async def _line(send: Send, payload: object) -> None:
    await send({"type": "http.response.body", "body": orjson.dumps(payload) + b"\n", "more_body": True})
