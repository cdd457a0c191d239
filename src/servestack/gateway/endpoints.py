"""What the gateway knows of the engines: endpoints, grouped into one pool per served model name.

The gateway never sees processes; the controller feeds this table from the supervisor, calling
`upsert(Endpoint(...))` whenever a replica changes state. Replicas of one service, and several
services sharing a served name, land in the same pool; each pool routes with its own policy.

What the controller describes (`Endpoint`: names, URLs, state) is replaced on every upsert; what the
gateway observes (`Vitals`: requests in flight, the circuit breaker, the engine's scraped load, a
drain in progress) belongs to the endpoint id and survives upserts, so a request that started before
an update is still counted, and a drain sees it finish.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType

from servestack.errors import ModelNotFound
from servestack.gateway.breaker import CircuitBreaker
from servestack.gateway.pool import Pool
from servestack.gateway.routing import make_policy
from servestack.stack import Routing

NO_NAMES: Mapping[str, str] = MappingProxyType({})


class EndpointState(Enum):
    """The replica's state as the controller reports it; only READY endpoints get requests."""

    STARTING = "starting"
    READY = "ready"
    DRAINING = "draining"
    DOWN = "down"


@dataclass(frozen=True)
class EngineLoad:
    """The engine's own view of its load, from its last metrics scrape."""

    waiting: float = 0.0
    running: float = 0.0
    kv_usage: float = 0.0
    scraped_at: float = 0.0


IDLE = EngineLoad()


class Vitals:
    """What the gateway observes about one endpoint."""

    __slots__ = ("_idle", "breaker", "draining", "in_flight", "load", "metrics")

    def __init__(self, breaker: CircuitBreaker) -> None:
        self.in_flight = 0
        self.breaker = breaker
        self.load = IDLE
        # The last scrape of the engine's /metrics: (it worked, its text); None before the first one.
        self.metrics: tuple[bool, str] | None = None
        self.draining = False
        self._idle: asyncio.Event | None = None

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

    `state` says whether it may get requests (`ready=True` is a shorthand for `state=READY`).
    `health_url` is probed in the background; `metrics_url` is scraped, its samples read under
    `metric_names` (common name → the engine's Prometheus name: `waiting`, `running`, `kv_usage`).
    """

    __slots__ = (
        "base_url", "engine", "health_url", "id", "metric_names", "metrics_url", "models", "service", "state", "vitals",
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


class EndpointTable:
    """Endpoints by id, and one routing pool per served model name."""

    def __init__(self, routing: Routing | None = None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.routing = routing or Routing()
        self.clock = clock
        self._endpoints: dict[str, Endpoint] = {}
        self._pools: dict[str, Pool] = {}

    def upsert(self, endpoint: Endpoint) -> None:
        """Add or replace the endpoint with `endpoint.id`, keeping what the gateway observed of it."""
        old = self._endpoints.get(endpoint.id)
        if old is None:
            endpoint.vitals = Vitals(self._breaker())
        else:
            endpoint.vitals = old.vitals
            if _new_incarnation(old, endpoint):
                self._forget(old)
            self._leave_pools(old, keep=endpoint.models)
        self._endpoints[endpoint.id] = endpoint
        for model in endpoint.models:
            self._pool(model).put(endpoint)

    def remove(self, endpoint_id: str) -> None:
        old = self._endpoints.pop(endpoint_id, None)
        if old is not None:
            self._forget(old)
            self._leave_pools(old, keep=())

    def get(self, endpoint_id: str) -> Endpoint | None:
        return self._endpoints.get(endpoint_id)

    def pool(self, model: str) -> Pool:
        """The pool serving `model`; raises ModelNotFound."""
        pool = self._pools.get(model)
        if pool is None:
            raise ModelNotFound(f"The model '{model}' does not exist", param="model")
        return pool

    def pick(self, model: str) -> Endpoint:
        """A ready endpoint serving `model`, chosen by its pool's policy (no request to route by)."""
        return self.pool(model).pick()

    def models(self) -> list[str]:
        return list(self._pools)

    def endpoints(self) -> list[Endpoint]:
        return list(self._endpoints.values())

    async def drain(self, endpoint_id: str, timeout: float) -> bool:
        """Send no new requests to the endpoint; wait until its in-flight requests finish, up to `timeout`.

        True when it drained, False when requests were still running at the timeout. The drain lasts
        until the controller reports the replica stopped or starting again (or removes it).
        """
        endpoint = self._endpoints.get(endpoint_id)
        if endpoint is None:
            return True
        endpoint.vitals.draining = True
        return await endpoint.vitals.wait_idle(timeout)

    def _pool(self, model: str) -> Pool:
        pool = self._pools.get(model)
        if pool is None:
            policy = make_policy(self.routing.policy_for(model), clock=self.clock)
            pool = self._pools[model] = Pool(model, policy, clock=self.clock)
        return pool

    def _leave_pools(self, endpoint: Endpoint, keep: tuple[str, ...]) -> None:
        for model in endpoint.models:
            pool = self._pools.get(model)
            if pool is None or model in keep:
                continue
            pool.discard(endpoint.id)
            if not pool.endpoints:
                del self._pools[model]

    def _forget(self, endpoint: Endpoint) -> None:
        """The engine behind the endpoint restarted or left: its caches and failures are gone."""
        endpoint.vitals.breaker.reset()
        endpoint.vitals.load = IDLE
        endpoint.vitals.draining = False
        for model in endpoint.models:
            pool = self._pools.get(model)
            if pool is not None:
                pool.policy.forget(endpoint.id)

    def _breaker(self) -> CircuitBreaker:
        return CircuitBreaker(self.routing.failure_threshold, self.routing.open_seconds, clock=self.clock)


def _new_incarnation(old: Endpoint, new: Endpoint) -> bool:
    """A different engine process now (or none): a new URL, or the replica is stopped or starting."""
    stopped = new.state in (EndpointState.STARTING, EndpointState.DOWN)
    return new.base_url != old.base_url or (stopped and old.state is not new.state)
