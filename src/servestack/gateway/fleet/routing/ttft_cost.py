"""`ttft_cost`: send each request where its first token is expected soonest.

For each candidate replica the expected time to first token is

    (prefill tokens queued there + this prompt's uncached tokens + decode_weight * streams decoding)
        ÷ the replica's prefill rate
    + the wait for a batch slot

* prefill tokens queued: the uncached prompt tokens of requests this gateway sent there whose first
  token has not come back yet (a whole answer counts until it is complete). Kept as one running
  sum per replica, updated on dispatch, first token and finish: nothing to walk per request.
* uncached tokens: the prompt less the prefix the replica is believed to hold (the same approximate
  prefix index as `cache_aware`), in estimated tokens (characters ÷ 4). They count `1 + spill_weight`
  times: a cold prefill also delays every request that queues behind it there, and leaves the
  prefix cached twice; without that weight, requests spill off their cached replica too eagerly.
* prefill rate: learned per replica from streams sent while it had a free batch slot, as (tokens
  queued ahead + own uncached tokens) ÷ observed time to first chunk, smoothed (the first sample
  is taken whole). A sample from a stream during which the replica's circuit opened (it stalled or
  failed) is not taken: that wait says nothing of its speed. What a sample says fades with its age
  (half-life `RATE_HALF_LIFE`): a replica's rate relaxes towards the pool's rate, the mean of the
  replicas' rates weighted by how fresh they are (or `prefill_rate` before any sample). A replica
  without fresh samples therefore looks like its measured peers, gets requests again, and is
  measured again: one slow sample (or one lucky one) cannot keep a healthy replica out of rotation.
* the decode-load penalty, in two parts: each stream decoding there costs `decode_weight` tokens of
  prefill time (running sequences share a real engine's steps); and once the engine is seen full
  (its scraped queue is not empty, so its running count is its batch size), a request beyond the
  batch waits its turn: excess × mean decode time ÷ batch size, the decode time measured from
  streams.

The least expected TTFT wins; estimates within a few percent count as equal, and then the replica
whose prefix index holds least wins, so distinct prefixes spread over the pool instead of piling
onto the first replica of an idle pool. Balance needs no thresholds: a hot replica's queue grows
until a cold prefill elsewhere is cheaper.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from servestack.gateway.fleet.routing.base import Attempt, BasePolicy, RouteRequest
from servestack.gateway.fleet.routing.prefix import BLOCK_TOKENS, PrefixIndex

if TYPE_CHECKING:
    from servestack.gateway.fleet.endpoint import Endpoint

DEFAULT_PREFILL_RATE = 8000.0  # estimated tokens per second, until streams are measured
SMOOTHING = 0.2
MIN_SAMPLE_TOKENS = 256  # shorter prefills are mostly network and gateway time
MAX_SAMPLE_SWING = 4.0  # one odd stream moves an established rate at most this factor
RATE_HALF_LIFE = 3.0  # seconds after which a sample counts half
TIE_MARGIN = 0.05  # estimates this close count as equal
TIE_SECONDS = 0.001


@dataclass
class _Replica:
    rate: float = 0.0  # measured; until then the pool's rate is used
    rate_samples: int = 0
    measured_at: float = 0.0
    prefill_tokens: float = 0.0
    decoding: int = 0
    decode_seconds: float = 0.0  # 0: not measured yet
    slots: int = 0  # batch size seen when the engine was full; 0: never seen full


class TtftCost(BasePolicy):
    name = "ttft_cost"
    watches_first_token = True

    def __init__(
        self,
        index: PrefixIndex | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        prefill_rate: float = DEFAULT_PREFILL_RATE,
        decode_weight: float = 4.0,
        spill_weight: float = 12.0,
    ) -> None:
        self.index = index or PrefixIndex()
        self.clock = clock
        self.prefill_rate = prefill_rate
        self.decode_weight = decode_weight
        self.spill_weight = spill_weight
        self._replicas: dict[str, _Replica] = {}

    def choose(self, candidates: Sequence[Endpoint], request: RouteRequest) -> Endpoint:
        hashes = request.blocks
        tokens = request.tokens
        now = self.clock()
        pool_rate = self._pool_rate(now)
        costs = [self._cost(c, tokens, hashes, now, pool_rate) for c in candidates]
        near = min(costs) * (1 + TIE_MARGIN) + TIE_SECONDS
        # Among (near) equals, the replica holding the fewest prefixes: a cold prompt then lands
        # where it evicts least, and distinct prefixes spread over the pool.
        ties = [(self.index.size(c.id), c.vitals.in_flight, i) for i, c in enumerate(candidates) if costs[i] <= near]
        return candidates[min(ties)[2]]

    def estimate(self, endpoint: Endpoint, tokens: float, hashes: Sequence[int]) -> float:
        """Expected seconds to the first token of a `tokens`-long prompt with block `hashes` on `endpoint`."""
        now = self.clock()
        return self._cost(endpoint, tokens, hashes, now, self._pool_rate(now))

    def _cost(self, endpoint: Endpoint, tokens: float, hashes: Sequence[int], now: float, pool_rate: float) -> float:
        replica = self._replica(endpoint.id)
        uncached = self._uncached(endpoint.id, tokens, hashes)
        work = replica.prefill_tokens + (1 + self.spill_weight) * uncached + self.decode_weight * replica.decoding
        return work / _relaxed(replica, now, pool_rate) + self._slot_wait(endpoint, replica)

    def dispatched(self, attempt: Attempt) -> None:
        endpoint = attempt.endpoint
        request = attempt.request
        replica = self._replica(endpoint.id)
        attempt.uncached_tokens = self._uncached(endpoint.id, request.tokens, request.blocks)
        attempt.tokens_ahead = replica.prefill_tokens
        attempt.measurable = self._slot_wait(endpoint, replica) == 0.0 and (
            not replica.slots or endpoint.in_flight < replica.slots
        )
        replica.prefill_tokens += attempt.uncached_tokens
        self.index.insert(endpoint.id, request.blocks)

    def first_token(self, attempt: Attempt) -> None:
        replica = self._replicas.get(attempt.endpoint.id)
        if replica is None or attempt.first_token_at is None:
            return
        replica.prefill_tokens = max(0.0, replica.prefill_tokens - attempt.uncached_tokens)
        replica.decoding += 1
        work = attempt.tokens_ahead + attempt.uncached_tokens
        if attempt.measurable and work >= MIN_SAMPLE_TOKENS:
            self._measured(replica, work / max(attempt.first_token_at - attempt.dispatched_at, 1e-6), self.clock())

    def finished(self, attempt: Attempt, *, ok: bool) -> None:
        replica = self._replicas.get(attempt.endpoint.id)
        if replica is None:
            return
        if attempt.first_token_at is None:
            replica.prefill_tokens = max(0.0, replica.prefill_tokens - attempt.uncached_tokens)
            return
        replica.decoding = max(0, replica.decoding - 1)
        if ok:
            seconds = self.clock() - attempt.first_token_at
            known = replica.decode_seconds
            replica.decode_seconds = seconds if not known else known + SMOOTHING * (seconds - known)

    def forget(self, endpoint_id: str) -> None:
        self._replicas.pop(endpoint_id, None)
        self.index.forget(endpoint_id)

    def rate(self, endpoint_id: str) -> float:
        """The prefill rate believed for the endpoint now, in estimated tokens per second."""
        now = self.clock()
        return _relaxed(self._replica(endpoint_id), now, self._pool_rate(now))

    def _measured(self, replica: _Replica, sample: float, now: float) -> None:
        known = _relaxed(replica, now, self._pool_rate(now))
        if replica.rate_samples:  # one odd stream must not overturn what many said
            sample = min(max(sample, known / MAX_SAMPLE_SWING), known * MAX_SAMPLE_SWING)
        # A belief that has faded gives way to a fresh sample: the first one is taken whole.
        weight = max(SMOOTHING, 1.0 - _freshness(replica, now))
        replica.rate = known + weight * (sample - known)
        replica.rate_samples += 1
        replica.measured_at = now

    def _pool_rate(self, now: float) -> float:
        """The mean of the replicas' measured rates, each weighted by how fresh it is."""
        measured = [r for r in self._replicas.values() if r.rate_samples]
        if not measured:
            return self.prefill_rate
        weights = [_freshness(r, now) for r in measured]
        total = sum(weights)
        if total < 1e-9:  # all long stale: their plain mean
            return sum(r.rate for r in measured) / len(measured)
        return sum(w * r.rate for w, r in zip(weights, measured, strict=True)) / total

    def _slot_wait(self, endpoint: Endpoint, replica: _Replica) -> float:
        load = endpoint.vitals.load
        if load.waiting > 0 and load.running > replica.slots:
            replica.slots = int(load.running)
        if not replica.slots or not replica.decode_seconds:
            return 0.0
        excess = max(endpoint.vitals.in_flight + 1 - replica.slots, load.waiting)
        return excess * replica.decode_seconds / replica.slots if excess > 0 else 0.0

    def _uncached(self, endpoint_id: str, tokens: float, hashes: Sequence[int]) -> float:
        cached = self.index.matched(endpoint_id, hashes) * BLOCK_TOKENS
        return max(tokens - cached, 1.0)

    def _replica(self, endpoint_id: str) -> _Replica:
        replica = self._replicas.get(endpoint_id)
        if replica is None:
            replica = self._replicas[endpoint_id] = _Replica()
        return replica


def _freshness(replica: _Replica, now: float) -> float:
    """How much the replica's measured rate still counts: 1 when just measured, halving every RATE_HALF_LIFE."""
    if not replica.rate_samples:
        return 0.0
    return float(0.5 ** (max(0.0, now - replica.measured_at) / RATE_HALF_LIFE))


def _relaxed(replica: _Replica, now: float, pool_rate: float) -> float:
    """The replica's rate as believed now: its measurement, faded towards the pool's rate."""
    return pool_rate + (replica.rate - pool_rate) * _freshness(replica, now)
