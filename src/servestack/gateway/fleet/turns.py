"""When each endpoint's next probe (or scrape) is due: turns that keep the background watch cheap in a large fleet.

Each endpoint gets its own turn: a random first one within a period, then its period ± `JITTER` after
its last check ended, so checks are spread evenly instead of arriving as one burst per round (the
monitor looks for due turns `TICKS_PER_PERIOD` times a period and starts them as one batch). The
period is the configured interval, stretched so that at most `CHECKS_PER_SECOND` checks go out a
second across the fleet. An endpoint that `rests` (nothing to learn from it now) waits
`REST_FACTOR` periods, unless requests reach it meanwhile (it then takes its turn at once).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from servestack.gateway.fleet.endpoint import Endpoint

CHECKS_PER_SECOND = 48.0  # probes (and, apart, scrapes) per second across the fleet, at most
TICKS_PER_PERIOD = 8
JITTER = 0.1
REST_FACTOR = 4.0


def never(endpoint: Endpoint) -> bool:
    return False


class Turns:
    __slots__ = ("_due", "_resting", "interval", "rests", "rng")

    def __init__(
        self, interval: float, *, rests: Callable[[Endpoint], bool] = never, rng: random.Random | None = None
    ) -> None:
        self.interval = interval
        self.rests = rests
        self.rng = rng or random.Random()
        self._due: dict[str, float] = {}  # on the event loop's clock; inf while a check is under way
        self._resting: set[str] = set()

    def period(self, watched: int) -> float:
        """Seconds between two turns of one endpoint, when `watched` endpoints take turns."""
        return max(self.interval, watched / CHECKS_PER_SECOND)

    def take_due(self, endpoints: list[Endpoint], now: float) -> list[Endpoint]:
        """The endpoints whose turn has come (a newcomer gets a random first turn within a period)."""
        period = self.period(len(endpoints))
        due, taken = self._due, []
        for endpoint in endpoints:
            at = due.get(endpoint.id)
            if at is None:
                due[endpoint.id] = now + self.rng.random() * period
            elif at <= now or (endpoint.vitals.in_flight and endpoint.id in self._resting):
                taken.append(endpoint)
                due[endpoint.id] = float("inf")
                self._resting.discard(endpoint.id)
        if len(due) > 2 * len(endpoints):  # endpoints that left
            ids = {e.id for e in endpoints}
            self._due = {k: v for k, v in due.items() if k in ids}
            self._resting &= ids
        return taken

    def done(self, endpoint: Endpoint, watched: int, now: float) -> None:
        """The endpoint's check ended: set its next turn."""
        period = self.period(watched) * self.rng.uniform(1 - JITTER, 1 + JITTER)
        if self.rests(endpoint):
            self._resting.add(endpoint.id)
            period *= REST_FACTOR
        self._due[endpoint.id] = now + period
