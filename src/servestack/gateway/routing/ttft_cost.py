"""`ttft_cost`: send each request where its first token is expected soonest.

For each candidate the estimated time to first token is

    backlog + (uncached prompt tokens + decode_weight * in flight + queue_weight * engine queue) / prefill rate

* backlog: the prefill work this gateway has queued there, in seconds. Each replica has a virtual
  prefill pipe: a dispatched request adds its uncached tokens / rate to the time the pipe frees,
  and the pipe drains as time passes — one number per replica, no list of requests to walk.
* uncached prompt tokens: the prompt less the prefix the replica is believed to hold (the same
  approximate prefix index as `cache_aware`).
* prefill rate: learned per replica from streams, (work queued ahead + own prompt) / observed time
  to first chunk, smoothed; a new replica starts from the pool's average.
* the decode-load penalty: every request in flight there costs `decode_weight` token-times (running
  sequences slow a real engine's steps and hold its batch slots), every request waiting in the
  engine's own queue (scraped) `queue_weight`.

The least expected TTFT wins; estimates within a few percent count as equal, and then the replica
whose prefix index holds least wins, so distinct prefixes spread over the pool instead of piling
onto the first replica of an idle pool. Balance needs no thresholds: a hot replica's backlog grows
until a cold prefill elsewhere is cheaper.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from servestack.gateway.routing.base import Attempt, BasePolicy, RouteRequest
from servestack.gateway.routing.prefix import BLOCK_TOKENS, PrefixIndex

if TYPE_CHECKING:
    from servestack.gateway.endpoints import Endpoint

DEFAULT_PREFILL_RATE = 8000.0  # tokens/s, until the first streams are measured
SMOOTHING = 0.2
MIN_TTFT = 1e-4
TIE_MARGIN = 0.05  # estimates this close count as equal
TIE_SECONDS = 0.001


@dataclass
class _Pipe:
    rate: float
    free_at: float = 0.0
    samples: int = 0


class TtftCost(BasePolicy):
    name = "ttft_cost"

    def __init__(
        self,
        index: PrefixIndex | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        prefill_rate: float = DEFAULT_PREFILL_RATE,
        decode_weight: float = 32.0,
        queue_weight: float = 256.0,
    ) -> None:
        self.index = index or PrefixIndex()
        self.clock = clock
        self.prefill_rate = prefill_rate
        self.decode_weight = decode_weight
        self.queue_weight = queue_weight
        self._pipes: dict[str, _Pipe] = {}

    def choose(self, candidates: Sequence[Endpoint], request: RouteRequest) -> Endpoint:
        now = self.clock()
        hashes = request.blocks
        tokens = request.tokens
        costs = [self.estimate(c, tokens, hashes, now) for c in candidates]
        near = min(costs) * (1 + TIE_MARGIN) + TIE_SECONDS
        # Among (near) equals, the replica holding the fewest prefixes: a cold prompt then lands
        # where it evicts least, and distinct prefixes spread over the pool.
        ties = [(self.index.size(c.id), c.vitals.in_flight, i) for i, c in enumerate(candidates) if costs[i] <= near]
        return candidates[min(ties)[2]]

    def estimate(self, endpoint: Endpoint, tokens: float, hashes: Sequence[int], now: float) -> float:
        """Expected seconds to the first token of a `tokens`-long prompt with `hashes` on `endpoint`."""
        pipe = self._pipe(endpoint.id)
        vitals = endpoint.vitals
        uncached = self._uncached(endpoint.id, tokens, hashes)
        penalty = self.decode_weight * vitals.in_flight + self.queue_weight * vitals.load.waiting
        return max(pipe.free_at - now, 0.0) + (uncached + penalty) / pipe.rate

    def dispatched(self, attempt: Attempt) -> None:
        endpoint_id = attempt.endpoint.id
        request = attempt.request
        pipe = self._pipe(endpoint_id)
        now = attempt.dispatched_at
        attempt.prefill_seconds = self._uncached(endpoint_id, request.tokens, request.blocks) / pipe.rate
        pipe.free_at = max(now, pipe.free_at) + attempt.prefill_seconds
        attempt.work_tokens = (pipe.free_at - now) * pipe.rate
        self.index.insert(endpoint_id, request.blocks)

    def finished(self, attempt: Attempt, *, ok: bool, first_token_at: float | None) -> None:
        pipe = self._pipes.get(attempt.endpoint.id)
        if pipe is None:
            return
        if not ok:
            # Its prefill will not happen (or was cut short): give its time back to the pipe.
            pipe.free_at = max(self.clock(), pipe.free_at - attempt.prefill_seconds)
            return
        if first_token_at is None:
            return
        sample = attempt.work_tokens / max(first_token_at - attempt.dispatched_at, MIN_TTFT)
        sample = min(max(sample, pipe.rate / 10), pipe.rate * 10)  # one odd stream must not swing it
        weight = SMOOTHING if pipe.samples else 1.0 - SMOOTHING  # the first sample replaces most of the prior
        pipe.rate += weight * (sample - pipe.rate)
        pipe.samples += 1

    def forget(self, endpoint_id: str) -> None:
        self._pipes.pop(endpoint_id, None)
        self.index.forget(endpoint_id)

    def rate(self, endpoint_id: str) -> float:
        """The prefill rate believed for the endpoint, in estimated tokens per second."""
        return self._pipe(endpoint_id).rate

    def _uncached(self, endpoint_id: str, tokens: float, hashes: Sequence[int]) -> float:
        cached = self.index.matched(endpoint_id, hashes) * BLOCK_TOKENS
        return max(tokens - cached, 1.0)

    def _pipe(self, endpoint_id: str) -> _Pipe:
        pipe = self._pipes.get(endpoint_id)
        if pipe is None:
            measured = [p.rate for p in self._pipes.values() if p.samples]
            rate = sum(measured) / len(measured) if measured else self.prefill_rate
            pipe = self._pipes[endpoint_id] = _Pipe(rate)
        return pipe
