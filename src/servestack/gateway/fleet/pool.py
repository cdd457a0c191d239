"""A pool: the endpoints serving one model name, and the policy that picks among them.

Candidates are the endpoints the controller reports ready, that are not being drained, and whose
circuit breaker lets a request through (a half-open circuit lets exactly one). With a single
candidate the policy is not asked to choose; a pool of a single endpoint does not tell the policy
about requests at all (there is nothing to route, and the request path stays as short as it was
without routing), so a policy starts learning when a second endpoint joins. A pool without
candidates answers 503 saying why: loading or restarting (with Retry-After), stopped (start it),
failed (its last error), or every replica failing (circuits open).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING

from servestack.errors import ModelFailed, ModelStopped, UpstreamUnavailable
from servestack.gateway.fleet.endpoint import EndpointState
from servestack.gateway.fleet.routing import NO_REQUEST, Attempt, Policy, RouteRequest

if TYPE_CHECKING:
    from servestack.gateway.fleet.endpoint import Endpoint


class Pool:
    def __init__(self, model: str, policy: Policy, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.model = model
        self.policy = policy
        self.clock = clock
        self.endpoints: list[Endpoint] = []
        # The largest context window of the pool's endpoints; None when any is unknown (nothing is checked).
        self.context_length: int | None = None
        self.on_demand = False  # some endpoint is loaded on demand: requests go through the load gate

    def put(self, endpoint: Endpoint) -> None:
        """Add the endpoint, or replace the one with its id (keeping its place)."""
        for i, existing in enumerate(self.endpoints):
            if existing.id == endpoint.id:
                self.endpoints[i] = endpoint
                break
        else:
            self.endpoints.append(endpoint)
        self._update_context()

    def discard(self, endpoint_id: str) -> None:
        self.endpoints = [e for e in self.endpoints if e.id != endpoint_id]
        self._update_context()

    def _update_context(self) -> None:
        self.on_demand = any(e.on_demand for e in self.endpoints)
        windows = [e.context_length for e in self.endpoints]
        self.context_length = None if None in windows or not windows else max(w for w in windows if w is not None)

    def candidates(self, exclude: Collection[str] = ()) -> list[Endpoint]:
        """Endpoints that may take a request now, less those whose ids are in `exclude`."""
        return [
            e for e in self.endpoints if e.ready and e.id not in exclude and e.vitals.breaker.permits()
        ]  # fmt: skip

    def choose(self, request: RouteRequest, exclude: Collection[str] = ()) -> Attempt:
        """Pick an endpoint for `request` and record the attempt; raises UpstreamUnavailable if none can take it."""
        candidates = self.candidates(exclude)
        if not candidates:
            raise self._unavailable()
        endpoint = candidates[0] if len(candidates) == 1 else self.policy.choose(candidates, request)
        endpoint.vitals.breaker.dispatched()
        attempt = Attempt(endpoint, request, self.clock())
        if self.routed:
            self.policy.dispatched(attempt)
        return attempt

    @property
    def routed(self) -> bool:
        """Whether there is anything to route: a pool of one endpoint skips the policy's bookkeeping."""
        return len(self.endpoints) > 1

    def first_token(self, attempt: Attempt, at: float) -> None:
        """A stream's first chunk came back (called only when the policy watches first tokens)."""
        attempt.first_token_at = at
        if attempt.endpoint.vitals.breaker.opened_at >= attempt.dispatched_at:
            attempt.measurable = False  # the replica stalled or failed meanwhile: this wait says nothing of its speed
        self.policy.first_token(attempt)

    def finish(self, attempt: Attempt, *, ok: bool) -> None:
        """The attempt ended: tell the endpoint's circuit breaker and the policy."""
        breaker = attempt.endpoint.vitals.breaker
        if ok:
            breaker.succeeded()
        else:
            breaker.failed()
        self.policy.finished(attempt, ok=ok)

    def abandon(self, attempt: Attempt) -> None:
        """The attempt was cut short by something other than the engine (a cancelled task)."""
        attempt.endpoint.vitals.breaker.abandoned()
        self.policy.finished(attempt, ok=False)

    def pick(self) -> Endpoint:
        """An endpoint for a request with nothing to route by; nothing is recorded."""
        candidates = self.candidates()
        if not candidates:
            raise self._unavailable()
        return self.policy.choose(candidates, NO_REQUEST)

    def _unavailable(self) -> UpstreamUnavailable:
        ready = [e for e in self.endpoints if e.ready]
        if ready:
            wait = min(e.vitals.breaker.open_seconds for e in ready)
            return UpstreamUnavailable(
                f"Every replica of the model '{self.model}' is failing; requests resume after a pause",
                retry_after=wait,
            )
        if any(e.state.passing for e in self.endpoints):
            return UpstreamUnavailable(
                f"The model '{self.model}' is loading (its engine is starting); try again shortly", retry_after=5
            )
        if any(e.state is EndpointState.DRAINING or e.vitals.draining for e in self.endpoints):
            return UpstreamUnavailable(f"The model '{self.model}' is being stopped or restarted", retry_after=5)
        return _down(self.model, self.endpoints)


def _down(model: str, endpoints: list[Endpoint]) -> UpstreamUnavailable:
    """Why a model none of whose replicas will come back by itself is unavailable, and the fix."""
    services = sorted({e.service for e in endpoints})
    fix = " and ".join(f"`servestack start {s}`" for s in services)
    failed = [e for e in endpoints if e.state is EndpointState.FAILED]
    errors = [e.last_error for e in failed or endpoints if e.last_error]
    last = f" (last error: {errors[0]})" if errors else ""
    if failed:
        return ModelFailed(f"The model '{model}' failed{last}; fix the cause, then {fix}")
    return ModelStopped(f"The model '{model}' is stopped{last}; {fix} starts it")
