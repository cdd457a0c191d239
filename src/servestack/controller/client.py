"""The other end of the control channel, for CLI commands run in another shell.

Plain `http.client` over the Unix socket: `stop` and `restart` should cost what they do, not the
~0.15 s of CPU an aiohttp import takes.
"""

from __future__ import annotations

import http.client
import json
import socket
import urllib.parse
from typing import Any

from servestack.errors import EngineError, ServestackError, StateError
from servestack.settings import Settings
from servestack.supervisor.state import StateStore, parse_label, pid_alive


def instance_running(settings: Settings) -> bool:
    instance = StateStore(settings.state_dir).read_instance()
    return instance is not None and pid_alive(instance.pid)


def service_action(settings: Settings, name: str, action: str) -> None:
    """Ask the running instance to start, stop or restart a service; block until it is done."""
    service, replica = parse_label(name)
    if replica is not None:
        raise StateError(
            f"{name!r} is one replica of {service!r}; {action} acts on a whole service",
            fix=f"`servestack {action} {service}` ({action}s all its replicas)",
        )
    store = StateStore(settings.state_dir)
    if not instance_running(settings) or not store.control_socket.exists():
        raise StateError("nothing is running", fix=f"`servestack up -d {name}` starts it in the background")
    path = f"/services/{urllib.parse.quote(name, safe='')}/{action}"
    status, payload = _request(str(store.control_socket), "POST", path)
    if status != 200:
        raise _error_from(payload)


def on_demand_snapshot(settings: Settings) -> list[dict[str, Any]] | None:
    """What the running instance says of its on-demand services (load state, use); None when nothing runs."""
    store = StateStore(settings.state_dir)
    if not instance_running(settings) or not store.control_socket.exists():
        return None
    status, payload = _request(str(store.control_socket), "GET", "/on-demand")
    if status != 200:
        raise _error_from(payload)
    services = payload.get("services")
    return services if isinstance(services, list) else []


def remove_model(settings: Settings, model: str) -> dict[str, Any]:
    """Ask the running instance to remove a model's files (it refuses while one of its services uses it)."""
    store = StateStore(settings.state_dir)
    status, payload = _request(str(store.control_socket), "POST", "/models/remove", {"model": model})
    if status != 200:
        raise _error_from(payload)
    return payload


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        # No timeout: starting an engine takes as long as its load; the instance enforces its own.
        super().__init__("servestack")
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def _request(
    socket_path: str, method: str, path: str, request: dict[str, Any] | None = None
) -> tuple[int, dict[str, Any]]:
    connection = _UnixConnection(socket_path)
    try:
        if request is None:
            connection.request(method, path)
        else:
            connection.request(method, path, json.dumps(request), {"Content-Type": "application/json"})
        response = connection.getresponse()
        status, body = response.status, response.read()
    except (OSError, http.client.HTTPException) as exc:
        raise StateError(
            f"cannot reach the running instance: {getattr(exc, 'strerror', None) or exc}",
            fix="`servestack status` shows whether it still runs; `servestack down` cleans up after a dead one",
        ) from None
    finally:
        connection.close()
    try:
        payload = json.loads(body)
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        return status, {"error": f"the running instance answered HTTP {status} without a JSON body"}
    return status, payload


def _error_from(payload: dict[str, Any]) -> ServestackError:
    message = str(payload.get("error", "unknown error"))
    fix = payload.get("fix") or None
    if payload.get("kind") == "EngineError":
        return EngineError(message, fix=fix, log_tail=[str(x) for x in payload.get("log_tail") or []])
    return StateError(message, fix=fix)
