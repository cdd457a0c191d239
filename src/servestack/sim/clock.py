"""Simulated time: the latency model thinks in engine seconds, the clock maps them to wall time.

With `time_scale` 0.01 one simulated second passes in 10 ms of wall time, so a test can run a
"ten-second" generation in a tenth of a second and still see every queueing effect in order.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Simulated seconds since the clock started."""
        ...

    async def sleep_until(self, moment: float) -> None:
        """Return once simulated time has reached `moment` (at once if it has)."""
        ...


class ScaledClock:
    """Simulated time running `time_scale` times as slow as wall time (below 1: faster)."""

    def __init__(self, time_scale: float = 1.0, monotonic: Callable[[], float] = time.monotonic) -> None:
        if time_scale <= 0:
            raise ValueError("time_scale must be > 0")
        self.time_scale = time_scale
        self._monotonic = monotonic
        self._origin = monotonic()

    def now(self) -> float:
        return (self._monotonic() - self._origin) / self.time_scale

    async def sleep_until(self, moment: float) -> None:
        # Loop: an event loop's cached time can fire a timer a hair early, and callers rely on
        # `now() >= moment` afterwards.
        while (delay := (moment - self.now()) * self.time_scale) > 0:
            await asyncio.sleep(delay)
