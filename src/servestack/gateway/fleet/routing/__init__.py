"""Routing policies: which replica of a pool gets a request.

    base         RouteRequest (prompt text and block hashes, derived once), Attempt, the Policy contract
    candidates   Candidates (the pool's ready set, by id)
    sampler      Sampler (a bounded pick of the candidates per choice), lookup by id
    prefix       PrefixIndex: the approximate prefix tree per replica (block-hash chains, LRU)
    round_robin  in turn
    least_load   fewest in flight plus the engine's queue
    cache_aware  SGLang-router-style prefix affinity with balance thresholds
    ttft_cost    least expected time to first token

`POLICIES` is the one registry; the stack file names a policy per served model (`routing:`).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from servestack.gateway.fleet.routing.base import NO_REQUEST, Attempt, BasePolicy, Policy, RouteRequest, load_of
from servestack.gateway.fleet.routing.cache_aware import CacheAware
from servestack.gateway.fleet.routing.candidates import Candidates
from servestack.gateway.fleet.routing.least_load import LeastLoad
from servestack.gateway.fleet.routing.prefix import PrefixIndex
from servestack.gateway.fleet.routing.round_robin import RoundRobin
from servestack.gateway.fleet.routing.sampler import Sampler
from servestack.gateway.fleet.routing.ttft_cost import TtftCost

POLICIES: dict[str, Callable[..., Policy]] = {
    "round_robin": RoundRobin,
    "least_load": LeastLoad,
    "cache_aware": CacheAware,
    "ttft_cost": TtftCost,
}
NEEDS_CLOCK = frozenset({"ttft_cost"})


def make_policy(name: str, *, clock: Callable[[], float] = time.monotonic, **options: float) -> Policy:
    """A fresh policy by its stack-file name (the schema has already checked the name).

    `options` are the policy's tuning parameters (thresholds, weights), for benchmarks and tests.
    """
    if name in NEEDS_CLOCK:
        options = {**options, "clock": clock}  # type: ignore[dict-item]
    return POLICIES[name](**options)


__all__ = [
    "NO_REQUEST",
    "POLICIES",
    "Attempt",
    "BasePolicy",
    "CacheAware",
    "Candidates",
    "LeastLoad",
    "Policy",
    "PrefixIndex",
    "RoundRobin",
    "RouteRequest",
    "Sampler",
    "TtftCost",
    "load_of",
    "make_policy",
]
