"""Per-key limits (requests/min, tokens/min, concurrent) and per-model bounded queues.

Request and token limits are sliding windows over the last 60 seconds, kept as deques of
timestamps: exact (the 51st request in any minute is refused, not the 51st "on average" as a token
bucket would allow), and O(1) amortised per request. Tokens are only known once an answer is
complete, so the token limit refuses new requests once the window is over budget rather than
cutting an answer short.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from servestack.errors import RateLimited, UpstreamUnavailable
from servestack.gateway.keys import ApiKey
from servestack.stack import QueueConfig

WINDOW = 60.0


@dataclass(slots=True)
class _KeyUsage:
    starts: deque[float] = field(default_factory=deque)
    spent: deque[tuple[float, int]] = field(default_factory=deque)
    tokens: int = 0
    active: int = 0


class KeyLimiter:
    """Admits or refuses requests per key; state is kept by key id, so it survives key reloads."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._usage: dict[str, _KeyUsage] = {}

    def acquire(self, key: ApiKey) -> None:
        """Count one request against `key` or raise RateLimited with the seconds until it would pass."""
        if key.rpm is None and key.tpm is None and key.max_concurrent is None:
            return
        usage = self._usage.get(key.id)
        if usage is None:
            usage = self._usage[key.id] = _KeyUsage()
        now = self.clock()
        if key.max_concurrent is not None and usage.active >= key.max_concurrent:
            raise RateLimited(f"Too many concurrent requests for this key (limit {key.max_concurrent})", retry_after=1)
        if key.tpm is not None:
            self._forget_tokens(usage, now)
            if usage.tokens >= key.tpm:
                wait = usage.spent[0][0] + WINDOW - now
                raise RateLimited(f"Rate limit reached: {key.tpm} tokens per minute", retry_after=_ceil(wait))
        if key.rpm is not None:
            starts = usage.starts
            cutoff = now - WINDOW
            while starts and starts[0] <= cutoff:
                starts.popleft()
            if len(starts) >= key.rpm:
                raise RateLimited(
                    f"Rate limit reached: {key.rpm} requests per minute", retry_after=_ceil(starts[0] + WINDOW - now)
                )
            starts.append(now)
        usage.active += 1

    def release(self, key: ApiKey, tokens: int = 0) -> None:
        """The request admitted by `acquire` is over; `tokens` count against the key's token budget."""
        usage = self._usage.get(key.id)
        if usage is None:
            return
        usage.active -= 1
        if tokens and key.tpm is not None:
            usage.spent.append((self.clock(), tokens))
            usage.tokens += tokens

    def _forget_tokens(self, usage: _KeyUsage, now: float) -> None:
        cutoff = now - WINDOW
        spent = usage.spent
        while spent and spent[0][0] <= cutoff:
            usage.tokens -= spent.popleft()[1]


def _ceil(seconds: float) -> float:
    return float(max(1, math.ceil(seconds)))


class ModelQueue:
    """At most `max_concurrent` requests upstream for one model; up to `max_waiting` wait in order."""

    def __init__(self, max_concurrent: int, max_waiting: int, timeout: float) -> None:
        self.max_concurrent = max_concurrent
        self.max_waiting = max_waiting
        self.timeout = timeout
        self.active = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._mean_seconds = 1.0  # moving average of time held, for Retry-After

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def acquire(self, model: str) -> None:
        if self.active < self.max_concurrent and not self._waiters:
            self.active += 1
            return
        if len(self._waiters) >= self.max_waiting:
            raise UpstreamUnavailable(
                f"The queue for model '{model}' is full ({self.max_waiting} waiting)", retry_after=self._retry_after()
            )
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter), self.timeout)
        except BaseException as exc:  # the wait timed out, or the client went away
            if waiter.done() and not waiter.cancelled():
                self.release(0.0)  # the slot was handed over just as we gave up: pass it on
            else:
                waiter.cancel()
                self._waiters.remove(waiter)
            if isinstance(exc, TimeoutError):
                raise UpstreamUnavailable(
                    f"Model '{model}' is busy: no turn within {self.timeout:g}s", retry_after=self._retry_after()
                ) from None
            raise

    def release(self, held_seconds: float) -> None:
        if held_seconds:
            self._mean_seconds += (held_seconds - self._mean_seconds) * 0.1
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes straight to the next waiter
                return
        self.active -= 1

    def _retry_after(self) -> float:
        per_slot = self._mean_seconds * (len(self._waiters) + 1) / self.max_concurrent
        return float(max(1, math.ceil(per_slot)))


class ModelQueues:
    """One `ModelQueue` per model, made on first use from the default or the model's own settings."""

    def __init__(
        self,
        default: QueueConfig | None,
        per_model: Mapping[str, QueueConfig],
        known: Callable[[str], bool],
    ) -> None:
        self.default = default
        self.per_model = dict(per_model)
        self.known = known
        self._queues: dict[str, ModelQueue] = {}

    def get(self, model: str) -> ModelQueue | None:
        queue = self._queues.get(model)
        if queue is not None:
            return queue
        config = self.per_model.get(model, self.default)
        if config is None or not self.known(model):  # unknown names are answered 404 later, never queued
            return None
        queue = self._queues[model] = ModelQueue(config.max_concurrent, config.max_waiting, config.timeout)
        return queue

    def items(self) -> list[tuple[str, ModelQueue]]:
        return list(self._queues.items())
