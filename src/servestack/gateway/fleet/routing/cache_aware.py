"""`cache_aware`: keep a prompt prefix on the replica that has it cached, unless load is out of balance.

In the manner of the SGLang router's policy:

1. Load is out of balance when both `max - min > balance_abs` and `max > balance_rel * min`
   (load = requests in flight plus the engine's queue). Then: the least loaded candidate.
2. Otherwise the prefix index says how much of the prompt each candidate was sent before. If the
   best match covers more than `cache_threshold` of the prompt: the best-matching candidate (ties:
   the less loaded). Else: the candidate whose index holds least (most room for a new prefix; ties:
   the less loaded).

The chosen candidate's index then records the prompt. The thresholds default to the SGLang
router's (0.3, 64, 1.5): balancing sooner (8 requests apart) lost more in cache hits than it gained
in balance on the shared-prefix benchmark (`bench/routing.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from servestack.gateway.fleet.routing.base import Attempt, BasePolicy, RouteRequest, load_of
from servestack.gateway.fleet.routing.prefix import PrefixIndex

if TYPE_CHECKING:
    from servestack.gateway.fleet.endpoint import Endpoint


class CacheAware(BasePolicy):
    name = "cache_aware"

    def __init__(
        self,
        index: PrefixIndex | None = None,
        *,
        cache_threshold: float = 0.3,
        balance_abs: float = 64.0,
        balance_rel: float = 1.5,
    ) -> None:
        self.index = index or PrefixIndex()
        self.cache_threshold = cache_threshold
        self.balance_abs = balance_abs
        self.balance_rel = balance_rel

    def choose(self, candidates: Sequence[Endpoint], request: RouteRequest) -> Endpoint:
        loads = [load_of(c) for c in candidates]
        low, high = min(loads), max(loads)
        if high - low > self.balance_abs and high > low * self.balance_rel:
            return candidates[loads.index(low)]
        hashes = request.blocks
        if hashes:
            matched = [self.index.matched(c.id, hashes) for c in candidates]
            best = max(matched)
            if best and best * self.index.block_chars > self.cache_threshold * len(request.text):
                return min((c for c, m in zip(candidates, matched, strict=True) if m == best), key=load_of)
        sizes = [self.index.size(c.id) for c in candidates]
        smallest = min(sizes)
        fits = [(load, i) for i, (load, size) in enumerate(zip(loads, sizes, strict=True)) if size == smallest]
        return candidates[min(fits)[1]]

    def dispatched(self, attempt: Attempt) -> None:
        self.index.insert(attempt.endpoint.id, attempt.request.blocks)

    def forget(self, endpoint_id: str) -> None:
        self.index.forget(endpoint_id)
