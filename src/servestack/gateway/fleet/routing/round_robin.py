"""`round_robin`: each request to the next candidate in turn, blind to load and caches."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from servestack.gateway.fleet.routing.base import BasePolicy, RouteRequest

if TYPE_CHECKING:
    from servestack.gateway.fleet.endpoint import Endpoint


class RoundRobin(BasePolicy):
    name = "round_robin"

    def __init__(self) -> None:
        self._next = 0

    def choose(self, candidates: Sequence[Endpoint], request: RouteRequest) -> Endpoint:
        index = self._next % len(candidates)
        self._next = index + 1
        return candidates[index]
