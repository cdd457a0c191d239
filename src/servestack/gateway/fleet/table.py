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

import time
from collections.abc import Callable

from servestack.errors import ModelNotFound
from servestack.gateway.fleet.breaker import CircuitBreaker
from servestack.gateway.fleet.endpoint import IDLE, Endpoint, EndpointState, Vitals
from servestack.gateway.fleet.pool import Pool
from servestack.gateway.fleet.routing import make_policy
from servestack.stack import Routing


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
                self._forget(old, endpoint.last_error or f"its replica is {endpoint.state.value}")
            self._leave_pools(old, keep=endpoint.models)
        self._endpoints[endpoint.id] = endpoint
        for model in endpoint.models:
            self._pool(model).put(endpoint)

    def remove(self, endpoint_id: str) -> None:
        old = self._endpoints.pop(endpoint_id, None)
        if old is not None:
            self._forget(old, "its replica was removed")
            self._leave_pools(old, keep=())

    def get(self, endpoint_id: str) -> Endpoint | None:
        return self._endpoints.get(endpoint_id)

    def find(self, model: str) -> Pool | None:
        """The pool serving the served name `model`, if any (clients' names resolve in names.py)."""
        return self._pools.get(model)

    def pool(self, model: str) -> Pool:
        """The pool serving the served name `model`; raises ModelNotFound."""
        pool = self._pools.get(model)
        if pool is None:
            raise ModelNotFound(f"The model '{model}' does not exist", param="model")
        return pool

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

    def _forget(self, endpoint: Endpoint, why: str) -> None:
        """The engine behind the endpoint restarted or left (`why`): its caches and failures are gone, and so
        are the calls still open on it (an engine on a dead node may never answer nor close them)."""
        endpoint.vitals.abandon_calls(why)
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
    stopped = new.state not in (EndpointState.READY, EndpointState.DRAINING)
    return new.base_url != old.base_url or (stopped and old.state is not new.state)
