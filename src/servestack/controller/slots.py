"""An on-demand service's slot: its load state and the requests claiming it; what the loader asks of the controller."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

from servestack.errors import EngineError, ModelLoadFailed, ServestackError
from servestack.plan import ServicePlan

TAIL_LINES = 5  # engine log lines quoted in a failed load's 503


class LoadState(Enum):
    UNLOADED = "unloaded"
    LOADING = "loading"
    LOADED = "loaded"
    DRAINING = "draining"


class Engines(Protocol):
    """What the on-demand loader asks of the controller: load and unload a service's replicas."""

    async def load_replicas(self, name: str) -> str:
        """Start (or wake) the service's replicas; `cold` or `wake`. Raises EngineError."""
        ...

    async def unload_replicas(self, name: str, why: str, *, sleep: bool) -> bool:
        """Drain, then stop (or put to sleep) the service's replicas; True when they sleep."""
        ...

    def service_ready(self, name: str) -> bool: ...


@dataclass(eq=False)
class Slot:
    plan: ServicePlan
    keep_alive: float
    state: LoadState = LoadState.UNLOADED
    claims: int = 0  # requests the gateway holds for it: waiting for the load, or in flight
    waiters: list[asyncio.Future[None]] = field(default_factory=list)
    waiting_since: float | None = None
    loaded_at: float = 0.0
    idle_since: float = 0.0
    asleep: bool = False  # its engine sleeps: no share of its GPUs, but a CUDA context on each
    unload_asked: str | None = None  # why an unload was asked for (`asked`, Ollama keep_alive 0)
    unloaded: list[asyncio.Future[None]] = field(default_factory=list)  # told when it is unloaded
    task: asyncio.Task[None] | None = None  # the load or unload in progress

    @property
    def name(self) -> str:
        return self.plan.name

    @property
    def busy(self) -> bool:
        return self.claims > 0 or bool(self.waiters)

    @property
    def holds_gpus(self) -> bool:
        return self.state is not LoadState.UNLOADED


def load_failed(slot: Slot, error: ServestackError) -> ModelLoadFailed:
    """The 503 every waiter gets: which model, which service, why, and the engine's last log lines."""
    names = ", ".join(f"'{n}'" for n in slot.plan.config.served_names)
    tail = error.log_tail[-TAIL_LINES:] if isinstance(error, EngineError) else []
    said = f"; its last log lines: {' | '.join(tail)}" if tail else ""
    return ModelLoadFailed(
        f"The model {names} could not be loaded: service {slot.name!r} failed to start: {error.message}{said}",
        retry_after=10,
    )
