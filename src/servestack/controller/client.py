"""The other end of the control channel, for CLI commands run in another shell."""

from __future__ import annotations

import asyncio
from typing import Any

from servestack.errors import EngineError, ServestackError, StateError
from servestack.settings import Settings
from servestack.supervisor import StateStore, pid_alive


def instance_running(settings: Settings) -> bool:
    instance = StateStore(settings.state_dir).read_instance()
    return instance is not None and pid_alive(instance.pid)


def service_action(settings: Settings, name: str, action: str) -> None:
    """Ask the running instance to start, stop or restart a service; block until it is done."""
    store = StateStore(settings.state_dir)
    if not instance_running(settings) or not store.control_socket.exists():
        raise StateError("nothing is running", fix=f"`servestack up -d {name}` starts it in the background")
    asyncio.run(_post(str(store.control_socket), f"/services/{name}/{action}"))


async def _post(socket_path: str, path: str) -> None:
    import aiohttp  # only the commands that talk to a running instance pay for it

    # Starting an engine can take as long as the engine's own load; the instance enforces its timeout.
    no_timeout = aiohttp.ClientTimeout(total=None)
    try:
        async with (
            aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=socket_path), timeout=no_timeout) as s,
            s.post("http://servestack" + path) as resp,
        ):
            payload = await resp.json()
    except aiohttp.ClientError as exc:
        raise StateError(f"cannot reach the running instance: {exc}") from None
    if resp.status != 200:
        raise _error_from(payload)


def _error_from(payload: dict[str, Any]) -> ServestackError:
    message = str(payload.get("error", "unknown error"))
    fix = payload.get("fix") or None
    if payload.get("kind") == "EngineError":
        return EngineError(message, fix=fix, log_tail=[str(x) for x in payload.get("log_tail") or []])
    return StateError(message, fix=fix)
