"""Per-key limits (requests/min, tokens/min, concurrent) and per-model bounded queues.

Request and token limits are sliding windows over the last 60 seconds. Requests are counted
exactly — each start kept as a timestamp — up to 6,000 per minute (the 51st request of a key
limited to 50 in any 60 seconds is refused, not "on average" as a token bucket would have it);
above that, and for tokens, counts are kept per time slice (0.1 s, 1 s) so memory stays bounded.
A slice leaves the window only once all of it is older than 60 s, so a limit is never exceeded.
All of it is O(1) amortised per request, with plain floats and ints (nothing for the garbage
collector to trace). Tokens are only known once an answer is complete, so the token limit
refuses new requests once the window is over budget rather than cutting an answer short.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable, Mapping

from servestack.errors import RateLimited, UpstreamUnavailable
from servestack.gateway.admission.keys import ApiKey
from servestack.stack import QueueConfig

WINDOW = 60.0
EXACT_RPM = 6000  # up to this many requests per minute, every start is kept
REQUEST_SLICE = 0.1
TOKEN_SLICE = 1.0


class Window:
    """A sliding 60-second sum, in slices of `width` seconds (0: every event on its own)."""

    __slots__ = ("counts", "starts", "total", "width")

    def __init__(self, width: float) -> None:
        self.width = width
        self.starts: deque[float] = deque()
        self.counts: deque[int] = deque()
        self.total = 0

    def add(self, now: float, amount: int) -> None:
        if self.starts and now < self.starts[-1] + self.width:
            self.counts[-1] += amount
        else:
            self.starts.append(now)
            self.counts.append(amount)
        self.total += amount

    def forget(self, now: float) -> None:
        """Drop the slices wholly older than the window."""
        horizon = now - WINDOW - self.width
        starts, counts = self.starts, self.counts
        while starts and starts[0] <= horizon:
            starts.popleft()
            self.total -= counts.popleft()

    def frees_in(self, now: float) -> float:
        """Seconds until the oldest slice leaves the window."""
        return self.starts[0] + WINDOW + self.width - now if self.starts else 0.0


class _KeyUsage:
    __slots__ = ("active", "requests", "tokens")

    def __init__(self, key: ApiKey) -> None:
        exact = key.rpm is not None and key.rpm <= EXACT_RPM
        self.requests = Window(0.0 if exact else REQUEST_SLICE)
        self.tokens = Window(TOKEN_SLICE)
        self.active = 0


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
            usage = self._usage[key.id] = _KeyUsage(key)
        now = self.clock()
        if key.max_concurrent is not None and usage.active >= key.max_concurrent:
            raise RateLimited(f"Too many concurrent requests for this key (limit {key.max_concurrent})", retry_after=1)
        if key.tpm is not None:
            usage.tokens.forget(now)
            if usage.tokens.total >= key.tpm:
                wait = usage.tokens.frees_in(now)
                raise RateLimited(f"Rate limit reached: {key.tpm} tokens per minute", retry_after=_ceil(wait))
        if key.rpm is not None:
            requests = usage.requests
            requests.forget(now)
            if requests.total >= key.rpm:
                wait = requests.frees_in(now)
                raise RateLimited(f"Rate limit reached: {key.rpm} requests per minute", retry_after=_ceil(wait))
            requests.add(now, 1)
        usage.active += 1

    def release(self, key: ApiKey, tokens: int = 0) -> None:
        """The request admitted by `acquire` is over; `tokens` count against the key's token budget."""
        usage = self._usage.get(key.id)
        if usage is None:
            return
        usage.active -= 1
        if tokens and key.tpm is not None:
            usage.tokens.add(self.clock(), tokens)


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
    ) -> None:
        self.default = default
        self.per_model = dict(per_model)
        self._queues: dict[str, ModelQueue] = {}

    def get(self, model: str) -> ModelQueue | None:
        queue = self._queues.get(model)
        if queue is not None:
            return queue
        config = self.per_model.get(model, self.default)
        if config is None:
            return None
        queue = self._queues[model] = ModelQueue(config.max_concurrent, config.max_waiting, config.timeout)
        return queue

    def items(self) -> list[tuple[str, ModelQueue]]:
        return list(self._queues.items())
