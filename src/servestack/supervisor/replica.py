"""One engine replica as the supervisor keeps it, and the port a new one is given."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from servestack.supervisor.state import ReplicaEvent

if TYPE_CHECKING:
    from servestack.engines import Engine, EngineConfig
    from servestack.plan import ServicePlan
    from servestack.runtimes import Launch
    from servestack.supervisor.launcher import EngineHandle, Launcher
    from servestack.supervisor.restart import RestartTracker
    from servestack.supervisor.state import ReplicaState

WILDCARD_HOSTS = {"0.0.0.0", "::", ""}


@dataclass
class Replica:
    plan: ServicePlan
    index: int
    engine: Engine
    config: EngineConfig
    launch: Launch
    state: ReplicaState
    launcher: Launcher
    process: EngineHandle | None = None
    watcher: asyncio.Task[None] | None = None
    restarts: RestartTracker | None = None
    driver_cuda: str | None = None  # the driver's CUDA version, when the runtime chose an environment by it

    @property
    def base_url(self) -> str:
        host = "127.0.0.1" if self.config.host in WILDCARD_HOSTS else self.config.host
        return f"http://{host}:{self.config.port}"


ReplicaListener = Callable[[Replica], None]
EventListener = Callable[[Replica, ReplicaEvent], None]
TickListener = Callable[[Replica, float], None]


def free_port(host: str) -> int:
    """A port that is free on `host` right now (the engine binds it moments later)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind(("" if host in WILDCARD_HOSTS else host, 0))
        return int(sock.getsockname()[1])
