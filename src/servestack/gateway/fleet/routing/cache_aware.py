"""`cache_aware`: keep a prompt prefix on the replica that has it cached, unless load is out of balance.

In the manner of the SGLang router's policy:

1. Load is out of balance when both `max - min > balance_abs` and `max > balance_rel * min`
   (load = requests in flight plus the engine's queue). Then: the least loaded candidate.
2. Otherwise the prefix index names the candidates holding the longest prefix of the prompt. If it
   covers more than `cache_threshold` of the prompt: the least loaded of them, unless its load is out
   of balance with the least loaded candidate's (then that one). Else: the candidate whose index holds
   least (most room for a new prefix; ties: the less loaded).

Loads and index sizes are weighed over the sampler's pick (every candidate of a small pool; the next
in turn and a few at random in a large one), so a choice costs the same in a pool of 4 or of 256,
and new prefixes and spilled load still reach every replica. The chosen candidate's index then
records the prompt. The thresholds default to the SGLang router's (0.3, 64, 1.5): balancing sooner
(8 requests apart) lost more in cache hits than it gained in balance on the shared-prefix benchmark
(`bench/routing.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from servestack.gateway.fleet.routing.base import Attempt, BasePolicy, RouteRequest, load_of
from servestack.gateway.fleet.routing.prefix import PrefixIndex
from servestack.gateway.fleet.routing.sampler import SAMPLE_SIZE, Sampler, lookup

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
        sampler: Sampler | None = None,
    ) -> None:
        self.index = index or PrefixIndex()
        self.cache_threshold = cache_threshold
        self.balance_abs = balance_abs
        self.balance_rel = balance_rel
        self.sampler = sampler or Sampler()

    def choose(self, candidates: Sequence[Endpoint], request: RouteRequest) -> Endpoint:
        sample = self.sampler.pick(candidates)
        loads = [load_of(c) for c in sample]
        low = min(loads)
        least = sample[loads.index(low)]
        if self._unbalanced(max(loads), low):
            return least
        hashes = request.blocks
        if hashes:
            matched, holders = self.index.longest(hashes, lookup(candidates), SAMPLE_SIZE)
            if holders and matched * self.index.block_chars > self.cache_threshold * len(request.text):
                best = min(holders, key=load_of)
                return least if self._unbalanced(load_of(best), low) else best
        sizes = [self.index.size(c.id) for c in sample]
        smallest = min(sizes)
        fits = [(load, i) for i, (load, size) in enumerate(zip(loads, sizes, strict=True)) if size == smallest]
        return sample[min(fits)[1]]

    def _unbalanced(self, high: float, low: float) -> bool:
        return high - low > self.balance_abs and high > low * self.balance_rel

    def dispatched(self, attempt: Attempt) -> None:
        self.index.insert(attempt.endpoint.id, attempt.request.blocks)

    def forget(self, endpoint_id: str) -> None:
        self.index.forget(endpoint_id)
