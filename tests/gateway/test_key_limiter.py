"""KeyLimiter with a fake clock: exact sliding windows, Retry-After, concurrency and token budgets."""

from __future__ import annotations

import pytest

from servestack.errors import RateLimited
from servestack.gateway.admission.keys import ApiKey
from servestack.gateway.admission.limits import KeyLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("rpm", [3, 10_000])  # an exact log, and 0.1 s slices above 6,000/min
def test_requests_per_minute_is_a_sliding_window(rpm: int) -> None:
    clock, key = Clock(), ApiKey(id="k", name="k", rpm=rpm)
    limiter = KeyLimiter(clock)
    for _ in range(rpm):
        limiter.acquire(key)
        limiter.release(key)
        clock.now += 20 / rpm
    with pytest.raises(RateLimited) as refused:
        limiter.acquire(key)
    assert 40 <= refused.value.retry_after <= 41  # the first request leaves the window 60 s after it came
    clock.now = 1000.0 + 60.2
    limiter.acquire(key)  # ... and then one more fits


def test_concurrency_and_tokens() -> None:
    clock = Clock()
    limiter = KeyLimiter(clock)
    two = ApiKey(id="c", name="c", max_concurrent=2)
    limiter.acquire(two)
    limiter.acquire(two)
    with pytest.raises(RateLimited):
        limiter.acquire(two)
    limiter.release(two)
    limiter.acquire(two)

    budget = ApiKey(id="t", name="t", tpm=100)
    limiter.acquire(budget)
    limiter.release(budget, tokens=60)
    clock.now += 30
    limiter.acquire(budget)
    limiter.release(budget, tokens=60)  # 120 in the window: over budget
    with pytest.raises(RateLimited) as refused:
        limiter.acquire(budget)
    assert refused.value.retry_after == 31  # the first 60 tokens leave the window (1 s slices)
    clock.now += 31
    limiter.acquire(budget)
