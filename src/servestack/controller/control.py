"""The control channel: a Unix socket on which the running instance takes `start`, `stop`, `restart`,
`load` and `unload`, tells what on-demand services are loaded (`GET /on-demand`, for `ps`), and takes
`rm` of a model (which it refuses while one of its services uses the model).

A local HTTP API (aiohttp over a socket file readable by its owner only), so other shells can
steer the instance without a network port. Answers are JSON; errors carry the message, the fix
and an engine's log tail, so the CLI can print them as if it had failed itself.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol

from aiohttp import web

from servestack.errors import EngineError, ServestackError


class ServiceSteering(Protocol):
    """What the control channel can ask of the running instance."""

    async def start_service(self, name: str) -> None: ...
    async def stop_service(self, name: str) -> None: ...
    async def restart_service(self, name: str) -> None: ...
    async def load_service(self, name: str) -> None: ...
    async def unload_service(self, name: str) -> None: ...
    def on_demand_snapshot(self) -> list[dict[str, object]]: ...
    async def remove_model(self, name: str) -> dict[str, object]: ...


def steering(controller: ServiceSteering, action: str) -> Callable[[str], Awaitable[None]] | None:
    """What the instance does for one of the verbs (the console's `ACTIONS`); None for another word."""
    handlers: dict[str, Callable[[str], Awaitable[None]]] = {
        "start": controller.start_service,
        "stop": controller.stop_service,
        "restart": controller.restart_service,
        "load": controller.load_service,
        "unload": controller.unload_service,
    }
    return handlers.get(action)


class ControlServer:
    def __init__(self, controller: ServiceSteering, path: Path) -> None:
        self.controller = controller
        self.path = path
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/services/{name}/{action}", self._service_action)
        app.router.add_get("/on-demand", self._on_demand)
        app.router.add_post("/models/remove", self._remove_model)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # left by an instance that was killed
        site = web.UnixSite(self._runner, str(self.path))
        await site.start()
        os.chmod(self.path, 0o600)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _service_action(self, request: web.Request) -> web.Response:
        name, action = request.match_info["name"], request.match_info["action"]
        handler = steering(self.controller, action)
        if handler is None:
            return web.json_response({"error": f"unknown action {action!r}"}, status=404)
        try:
            await handler(name)
        except ServestackError as error:
            return web.json_response(error_payload(error), status=409)
        return web.json_response({"ok": True, "service": name, "action": action})

    async def _on_demand(self, request: web.Request) -> web.Response:
        return web.json_response({"services": self.controller.on_demand_snapshot()})

    async def _remove_model(self, request: web.Request) -> web.Response:
        try:
            removed = await self.controller.remove_model(str((await request.json()).get("model", "")))
        except ServestackError as error:
            return web.json_response(error_payload(error), status=409)
        return web.json_response({"ok": True, **removed})


def error_payload(error: ServestackError) -> dict[str, object]:
    return {
        "error": error.message,
        "fix": error.fix,
        "log_tail": error.log_tail if isinstance(error, EngineError) else [],
        "kind": type(error).__name__,
    }
