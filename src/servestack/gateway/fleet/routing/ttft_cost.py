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
where the prompt evicts least from the prefix index wins, then the least busy, then the next in turn,
so distinct prefixes spread over the pool instead of piling onto the first replica of an idle pool
(or onto a replica that has just rejoined with an empty index). Balance needs no thresholds: a hot replica's queue grows
until a cold prefill elsewhere is cheaper.

Not every candidate is estimated, so that a choice costs the same in a pool of 4 or of 256: every
candidate of a pool no larger than the sampler's size; of a larger pool as many: the replicas holding
the prompt's longest prefix (found in the prefix index, `HOLDERS_WEIGHED` of them) and, to make up
the number, the next in turn and others at random (power-of-k choices). The pool's rate is kept as
running sums (see `_PoolRate`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from servestack.gateway.fleet.routing.base import Attempt, BasePolicy, RouteRequest
from servestack.gateway.fleet.routing.prefix import BLOCK_TOKENS, PrefixIndex
from servestack.gateway.fleet.routing.sampler import Sampler, lookup

if TYPE_CHECKING:
    from servestack.gateway.fleet.endpoint import Endpoint

DEFAULT_PREFILL_RATE = 8000.0  # estimated tokens per second, until streams are measured
SMOOTHING = 0.2
MIN_SAMPLE_TOKENS = 256  # shorter prefills are mostly network and gateway time
MAX_SAMPLE_SWING = 4.0  # one odd stream moves an established rate at most this factor
RATE_HALF_LIFE = 3.0  # seconds after which a sample counts half
TIE_MARGIN = 0.05  # estimates this close count as equal
TIE_SECONDS = 0.001
HOLDERS_WEIGHED = 2  # of the replicas holding a prompt's longest prefix, how many are estimated (at random)
MAX_HALF_LIVES = 60.0  # the pool rate's sums are rebuilt past this, so their weights stay of a few magnitudes


_NONE_CHOSEN: tuple[None, None, float] = (None, None, 0.0)


@dataclass(slots=True)  # one in 256 requests touches a replica's: the fewer cache lines, the better
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
        sampler: Sampler | None = None,
    ) -> None:
        self.index = index or PrefixIndex()
        self.clock = clock
        self.prefill_rate = prefill_rate
        self.decode_weight = decode_weight
        self.spill_weight = spill_weight
        self.sampler = sampler or Sampler()
        self._replicas: dict[str, _Replica] = {}
        self._rates = _PoolRate()
        self._turn = 0  # rotates the choice among replicas that tie on everything else
        self._chosen: tuple[RouteRequest | None, Endpoint | None, float] = _NONE_CHOSEN  # the last choice's

    def choose(self, candidates: Sequence[Endpoint], request: RouteRequest) -> Endpoint:
        hashes = request.blocks
        tokens = request.tokens
        now = self.clock()
        pool_rate = self._pool_rate(now)
        size = self.sampler.size
        if hashes and len(candidates) > size:  # as many estimates as in a small pool: holders first
            _, holders = self.index.longest(hashes, lookup(candidates), HOLDERS_WEIGHED)
            picked = self.sampler.pick(candidates, max(1, size - len(holders)))
            held = [h.id for h in holders]  # by id: a frozen dataclass's == compares every field
            weighed = [*holders, *[c for c in picked if c.id not in held]]
        else:
            weighed = self.sampler.pick(candidates)
        uncached = [self._uncached(c.id, tokens, hashes) for c in weighed]
        costs = [self._cost(c, uncached[i], now, pool_rate) for i, c in enumerate(weighed)]
        near = min(costs) * (1 + TIE_MARGIN) + TIE_SECONDS
        # Among (near) equals: the replica where the prompt evicts least (only a full cache evicts), then
        # the least busy, then the next in turn, so distinct prefixes spread over the pool. Not simply the
        # fewest prefixes held: a replica whose index was just emptied (it rejoined, or is new) would
        # then take every cold prompt until it held as many as the others.
        room, count, turn = self.index.capacity_blocks, len(weighed), self._turn
        self._turn += 1
        ties = [
            (max(0, self.index.size(c.id) + len(hashes) - room), c.vitals.in_flight, (i - turn) % count, i)
            for i, c in enumerate(weighed)
            if costs[i] <= near
        ]
        chosen = min(ties)[3]
        self._chosen = (request, weighed[chosen], uncached[chosen])  # `dispatched` needs not look it up again
        return weighed[chosen]

    def estimate(self, endpoint: Endpoint, tokens: float, hashes: Sequence[int]) -> float:
        """Expected seconds to the first token of a `tokens`-long prompt with block `hashes` on `endpoint`."""
        now = self.clock()
        return self._cost(endpoint, self._uncached(endpoint.id, tokens, hashes), now, self._pool_rate(now))

    def _cost(self, endpoint: Endpoint, uncached: float, now: float, pool_rate: float) -> float:
        replica = self._replica(endpoint.id)
        work = replica.prefill_tokens + (1 + self.spill_weight) * uncached + self.decode_weight * replica.decoding
        return work / _relaxed(replica, now, pool_rate) + self._slot_wait(endpoint, replica)

    def dispatched(self, attempt: Attempt) -> None:
        endpoint = attempt.endpoint
        request = attempt.request
        replica = self._replica(endpoint.id)
        chosen_for, chosen, uncached = self._chosen
        self._chosen = _NONE_CHOSEN
        if chosen_for is not request or chosen is not endpoint:  # chosen elsewhere (a pool of one skips `choose`)
            uncached = self._uncached(endpoint.id, request.tokens, request.blocks)
        attempt.uncached_tokens = uncached
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
        replica = self._replicas.pop(endpoint_id, None)
        if replica is not None and replica.rate_samples:
            self._rates.rebuild(self._replicas.values(), self._rates.origin)
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
        self._rates.remove(replica)
        replica.rate = known + weight * (sample - known)
        replica.rate_samples += 1
        replica.measured_at = now
        self._rates.add(replica, self._replicas.values())

    def _pool_rate(self, now: float) -> float:
        """The mean of the replicas' measured rates, each weighted by how fresh it is."""
        rate = self._rates.mean(now)
        return self.prefill_rate if rate is None else rate

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


class _PoolRate:
    """The freshness-weighted mean of the measured replicas' rates, as running sums.

    Every weight halves alike with time, so the weighted mean changes only when a replica is measured
    or forgotten: each weight is kept relative to `origin` (2 ** ((measured_at - origin) / half-life)),
    and the sums are rebuilt from a newer origin before the weights span too many magnitudes to add
    up exactly (a re-measured replica's weight only grows, so taking its old one out loses nothing).
    """

    __slots__ = ("count", "origin", "rates", "weighted", "weights")

    def __init__(self) -> None:
        self.origin = 0.0
        self.weighted = self.weights = self.rates = 0.0
        self.count = 0

    def mean(self, now: float) -> float | None:
        if not self.count:
            return None
        if self.weights * 0.5 ** ((now - self.origin) / RATE_HALF_LIFE) < 1e-9:  # all long stale: their plain mean
            return self.rates / self.count
        return self.weighted / self.weights

    def add(self, replica: _Replica, replicas: Iterable[_Replica]) -> None:
        """Count the newly measured `replica`, one of `replicas`."""
        if (replica.measured_at - self.origin) / RATE_HALF_LIFE > MAX_HALF_LIVES:
            self.rebuild(replicas, replica.measured_at)
        else:
            self._add(replica, 1.0)

    def remove(self, replica: _Replica) -> None:
        """Take out a replica about to be measured again."""
        if replica.rate_samples:
            self._add(replica, -1.0)

    def rebuild(self, replicas: Iterable[_Replica], origin: float) -> None:
        self.origin = origin
        self.weighted = self.weights = self.rates = 0.0
        self.count = 0
        for replica in replicas:
            if replica.rate_samples:
                self._add(replica, 1.0)

    def _add(self, replica: _Replica, sign: float) -> None:
        weight = 2.0 ** ((replica.measured_at - self.origin) / RATE_HALF_LIFE)
        self.weighted += sign * weight * replica.rate
        self.weights += sign * weight
        self.rates += sign * replica.rate
        self.count += int(sign)


def _freshness(replica: _Replica, now: float) -> float:
    """How much the replica's measured rate still counts: 1 when just measured, halving every RATE_HALF_LIFE."""
    if not replica.rate_samples:
        return 0.0
    return float(0.5 ** (max(0.0, now - replica.measured_at) / RATE_HALF_LIFE))


def _relaxed(replica: _Replica, now: float, pool_rate: float) -> float:
    """The replica's rate as believed now: its measurement, faded towards the pool's rate."""
    return pool_rate + (replica.rate - pool_rate) * _freshness(replica, now)
