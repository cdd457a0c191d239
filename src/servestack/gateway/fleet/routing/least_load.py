"""`least_load`: the candidate with the fewest requests in flight plus waiting in the engine's own queue.

In-flight counts are exact and current (the gateway keeps them); the engine's queue comes from the
last background scrape and also counts work that did not come through this gateway. Ties go to the
candidate after the last one chosen, so an idle pool is still spread round-robin. In a pool larger
than the sample (candidates.py) the least loaded of the next in turn and a few at random wins:
power-of-k choices, at a cost that does not grow with the pool.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from servestack.gateway.fleet.routing.base import BasePolicy, RouteRequest, load_of
from servestack.gateway.fleet.routing.sampler import Sampler

if TYPE_CHECKING:
    from servestack.gateway.fleet.endpoint import Endpoint


class LeastLoad(BasePolicy):
    name = "least_load"

    def __init__(self, sampler: Sampler | None = None) -> None:
        self.sampler = sampler or Sampler()

    def choose(self, candidates: Sequence[Endpoint], request: RouteRequest) -> Endpoint:
        return min(self.sampler.pick(candidates), key=load_of)  # the first of equals: the next in turn
