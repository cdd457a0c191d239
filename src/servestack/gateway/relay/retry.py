"""The retry budget: retries may add a bounded fraction to the traffic, so they cannot amplify an outage.

A token bucket: every request deposits `ratio` of a token, every retry takes a whole one, and a
trickle of `min_per_second` keeps a quiet gateway able to retry at all. The bucket holds at most
`burst` tokens (and starts full), enough for the requests that were in flight on a replica at the
moment it died. When most replicas fail, the budget runs dry and failures are answered at once
instead of multiplying the load on the replicas that are left.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class RetryBudget:
    def __init__(
        self,
        ratio: float = 0.2,
        *,
        burst: float = 50.0,
        min_per_second: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ratio = ratio
        self.burst = burst
        self.min_per_second = min_per_second
        self._clock = clock
        self._balance = burst
        self._refilled_at = clock()

    @property
    def balance(self) -> float:
        now = self._clock()
        self._balance = min(self.burst, self._balance + (now - self._refilled_at) * self.min_per_second)
        self._refilled_at = now
        return self._balance

    def deposit(self) -> None:
        """One request came in."""
        balance = self._balance + self.ratio
        self._balance = balance if balance < self.burst else self.burst

    def can_retry(self) -> bool:
        return self.ratio > 0 and self.balance >= 1.0 - 1e-9  # ten requests at 0.1 earn one retry

    def withdraw(self) -> bool:
        """Take one retry; False when the budget is spent."""
        if not self.can_retry():
            return False
        self._balance -= 1.0
        return True
