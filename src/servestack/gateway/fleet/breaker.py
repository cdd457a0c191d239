"""A circuit breaker per endpoint: stop sending requests to a replica that keeps failing.

    CLOSED ──N consecutive failures──▶ OPEN ──open_seconds──▶ HALF_OPEN ──trial succeeds──▶ CLOSED
                                        ▲                          │
                                        └──────trial fails─────────┘

Failures are reported by the relay (connect errors, engine 5xx answers, streams cut short, first-byte
deadlines) and by the active health probes; successes by the same. A stalled replica (its probe timed
out while it sent nothing) trips the circuit open at once. While HALF_OPEN exactly one request is let
through as the trial; a successful health probe also closes a half-open circuit, so a replica that
gets no traffic still recovers. `permits()` is on the request path and does no I/O.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import Enum

Clock = Callable[[], float]


class BreakerState(Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    __slots__ = ("_clock", "_opened_at", "_trial_out", "failure_threshold", "failures", "open_seconds", "state")

    def __init__(self, failure_threshold: int = 3, open_seconds: float = 5.0, *, clock: Clock = time.monotonic):
        self.failure_threshold = failure_threshold
        self.open_seconds = open_seconds
        self.state = BreakerState.CLOSED
        self.failures = 0
        self._clock = clock
        self._opened_at = 0.0
        self._trial_out = False

    def permits(self) -> bool:
        """Whether a request may go to this endpoint now (an open circuit turns half-open once it has waited)."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.OPEN:
            if self._clock() - self._opened_at < self.open_seconds:
                return False
            self.state = BreakerState.HALF_OPEN
            self._trial_out = False
        return not self._trial_out

    def dispatched(self) -> None:
        """A request was sent; in HALF_OPEN it is the one trial."""
        if self.state is BreakerState.HALF_OPEN:
            self._trial_out = True

    def abandoned(self) -> None:
        """A request ended without a verdict (cancelled): a half-open circuit may try again."""
        self._trial_out = False

    def succeeded(self) -> None:
        self.failures = 0
        self.state = BreakerState.CLOSED
        self._trial_out = False

    def failed(self) -> None:
        self.failures += 1
        if self.state is BreakerState.HALF_OPEN or self.failures >= self.failure_threshold:
            self._open()

    def probe_succeeded(self) -> None:
        """An active health probe answered: it may close a half-open circuit, never an open one.

        The probe says the engine is up, not that it answers requests well (a wedged engine still
        answers /health), so an open circuit waits for its trial request.
        """
        if self.state is BreakerState.HALF_OPEN:
            self.succeeded()

    def trip(self) -> None:
        """Open the circuit now, whatever the count (the replica stalled)."""
        self.failures = max(self.failures + 1, self.failure_threshold)
        self._open()

    @property
    def opened_at(self) -> float:
        """When the circuit last opened (0: never)."""
        return self._opened_at

    def reset(self) -> None:
        """A new incarnation of the endpoint (restarted engine): forget its past."""
        self.succeeded()

    def _open(self) -> None:
        self.state = BreakerState.OPEN
        self._opened_at = self._clock()
        self._trial_out = False
