"""`least_load`: the candidate with the fewest requests in flight plus waiting in the engine's own queue.

In-flight counts are exact and current (the gateway keeps them); the engine's queue comes from the
last background scrape and also counts work that did not come through this gateway. Ties go to the
candidate after the last one chosen, so an idle pool is still spread round-robin.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from servestack.gateway.fleet.routing.base import BasePolicy, RouteRequest, load_of

if TYPE_CHECKING:
    from servestack.gateway.fleet.endpoint import Endpoint


class LeastLoad(BasePolicy):
    name = "least_load"

    def __init__(self) -> None:
        self._next = 0

    def choose(self, candidates: Sequence[Endpoint], request: RouteRequest) -> Endpoint:
        count = len(candidates)
        start = self._next % count
        best = candidates[start]
        best_load = load_of(best)
        for offset in range(1, count):
            candidate = candidates[(start + offset) % count]
            load = load_of(candidate)
            if load < best_load:
                best, best_load = candidate, load
        self._next = start + 1
        return best
