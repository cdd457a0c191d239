"""Per-key limits: requests per minute, tokens per minute, requests at once.

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

import math
import time
from collections import deque
from collections.abc import Callable

from servestack.errors import RateLimited
from servestack.gateway.admission.keys import ApiKey

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
