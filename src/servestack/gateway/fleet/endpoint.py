"""One engine replica as the gateway sees it: what the controller says (`Endpoint`) and what the
gateway observes of it (`Vitals`: requests in flight, circuit breaker, engine load, last metrics scrape,
whether it is sending anything, the engine calls open on it).

Kept apart from the table (table.py) so that routing policies and pools can name it without
depending on the table that holds them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType
from typing import Any, Protocol

from servestack.dialect import OPENAI, Dialect
from servestack.gateway.fleet.breaker import CircuitBreaker

NO_NAMES: Mapping[str, str] = MappingProxyType({})
NO_DEFAULTS: Mapping[str, Any] = MappingProxyType({})


class EndpointState(Enum):
    """The replica's state as the controller reports it; only READY endpoints get requests.

    STARTING and RESTARTING will pass (a client may retry); STOPPED (on purpose, or it exited on its
    own) and FAILED (gave up restarting) last until someone starts it again.
    """

    STARTING = "starting"
    READY = "ready"
    DRAINING = "draining"
    RESTARTING = "restarting"
    STOPPED = "stopped"
    FAILED = "failed"
    UNLOADED = "unloaded"

    @property
    def passing(self) -> bool:
        """Whether the replica is on its way to READY by itself."""
        return self in (EndpointState.STARTING, EndpointState.RESTARTING)


@dataclass(frozen=True)
class EngineLoad:
    """The engine's own view of its load, from its last metrics scrape."""

    waiting: float = 0.0
    running: float = 0.0
    kv_usage: float = 0.0
    scraped_at: float = 0.0


IDLE = EngineLoad()


class Waiter(Protocol):
    """A request waiting for the endpoint's answer to begin (the relay's first-byte deadline).

    The monitor's sweep calls `check` on each; a stalled replica `expire`s those another replica could take.
    """

    retryable: bool

    def check(self, now: float) -> None: ...

    def expire(self, reason: str) -> None: ...


class Call(Protocol):
    """An engine call open on the endpoint (the relay's connection to it), from the request to the last byte."""

    def abandon(self, reason: str) -> None:
        """End the call now: whoever waits on it gets an error saying `reason`, and its connection is closed."""
        ...


class Vitals:
    """What the gateway observes about one endpoint."""

    __slots__ = ("_idle", "breaker", "calls", "draining", "in_flight", "load", "metrics", "progress", "waiting")

    def __init__(self, breaker: CircuitBreaker) -> None:
        self.in_flight = 0
        self.breaker = breaker
        self.load = IDLE
        # The text of the last scrape of the engine's /metrics ("" when it failed); None before the first.
        self.metrics: str | None = None
        self.draining = False
        self.progress = 0  # counts answers and stream chunks received from the engine: it is not wedged
        self.waiting: set[Waiter] = set()  # requests waiting for their answer to begin
        self.calls: set[Call] = set()  # engine calls open on it
        self._idle: asyncio.Event | None = None

    def abandon_calls(self, reason: str) -> None:
        """The engine behind the endpoint is gone (its node died, it exited): end every call still open on it,
        so that none waits for an answer from a machine that may never send one or close the connection."""
        for call in list(self.calls):
            call.abandon(reason)

    def finished_one(self) -> None:
        if self.in_flight == 0 and self._idle is not None:
            self._idle.set()

    async def wait_idle(self, timeout: float) -> bool:
        """True once no request is in flight; False if `timeout` seconds pass first."""
        if self.in_flight == 0:
            return True
        if self._idle is None or self._idle.is_set():
            self._idle = asyncio.Event()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return self.in_flight == 0
        return True


class Endpoint:
    """One engine replica as the gateway sees it.

    `state` says whether it may get requests (`ready=True` is a shorthand for `state=READY`), and
    `last_error` why it is not running, when it failed. `health_url` is probed in the background;
    `metrics_url` is scraped, its samples read under `metric_names` (common name → the engine's
    Prometheus name: `waiting`, `running`, `kv_usage`). `context_length` is the engine's context
    window in tokens, when the plan knows it. What the engine adapter declares, the gateway reads here:
    `dialect` (what its server accepts of an OpenAI request, openai/conform.py), `native_routes` (its own routes
    the gateway passes through, e.g. SGLang's `/generate`), `model_format` (`gguf`, as Ollama's API reports it).
    `on_demand`: the controller loads it when a request asks for it (relay/loading.py).
    `defaults` are the service's request defaults (openai/defaults.py). `node` names the cluster node
    the replica runs on ("" on this machine).
    """

    __slots__ = (
        "base_url", "context_length", "defaults", "dialect", "engine", "health_url", "id", "last_error",
        "metric_names", "metrics_url", "model_format", "models", "native_routes", "node", "on_demand", "service",
        "state", "vitals",
    )  # fmt: skip

    def __init__(
        self,
        id: str,
        service: str,
        models: tuple[str, ...],
        base_url: str,
        *,
        state: EndpointState | None = None,
        ready: bool | None = None,
        engine: str = "",
        health_url: str | None = None,
        metrics_url: str | None = None,
        metric_names: Mapping[str, str] = NO_NAMES,
        context_length: int | None = None,
        last_error: str | None = None,
        dialect: Dialect = OPENAI,
        native_routes: tuple[str, ...] = (),
        model_format: str = "",
        on_demand: bool = False,
        defaults: Mapping[str, Any] = NO_DEFAULTS,
        node: str = "",
    ) -> None:
        self.id = id
        self.service = service
        self.models = tuple(models)
        self.base_url = base_url
        self.state = state if state is not None else EndpointState.READY if ready else EndpointState.STARTING
        self.engine = engine
        self.health_url = health_url
        self.metrics_url = metrics_url
        self.metric_names = metric_names
        self.context_length = context_length
        self.last_error = last_error
        self.dialect = dialect
        self.native_routes = native_routes
        self.model_format = model_format
        self.on_demand = on_demand
        self.defaults = defaults
        self.node = node
        self.vitals = Vitals(CircuitBreaker())

    @property
    def ready(self) -> bool:
        """Reported ready and not being drained (the circuit breaker is not consulted)."""
        return self.state is EndpointState.READY and not self.vitals.draining

    @property
    def in_flight(self) -> int:
        return self.vitals.in_flight

    @in_flight.setter
    def in_flight(self, value: int) -> None:
        vitals = self.vitals
        vitals.in_flight = value
        if value == 0:
            vitals.finished_one()

    def __repr__(self) -> str:
        return f"Endpoint({self.id!r}, {self.base_url!r}, {self.state.value}, in_flight={self.vitals.in_flight})"
