"""What a policy looks at per choice: a bounded sample of the candidates, and a lookup by id.

A choice must cost the same whatever the size of the pool, so a policy never walks every
candidate: it looks at a `Sampler`'s pick (all of a small pool; of a larger one, the next candidate
in turn and a few at random: power-of-k choices, whose worst load is close to a full scan's at a
fixed cost), plus whatever an index names directly (the replicas holding a prompt's prefix).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from servestack.gateway.fleet.routing.candidates import Candidates

if TYPE_CHECKING:
    from servestack.gateway.fleet.endpoint import Endpoint

SAMPLE_SIZE = 4  # candidates a policy weighs per choice in a large pool (power-of-k: 2 already does well)


def lookup(candidates: Sequence[Endpoint]) -> Callable[[str], Endpoint | None]:
    """A candidate by its id (None: not a candidate): the dict's own `get`, which the index calls per holder."""
    if isinstance(candidates, Candidates):
        return candidates.by_id().get
    return {c.id: c for c in candidates}.get


class Sampler:
    """Which candidates a policy weighs: every one of a small pool, starting with the next in turn; of a
    larger pool the next in turn and `size - 1` at random (a repeat only wastes a look)."""

    def __init__(self, size: int = SAMPLE_SIZE, rng: random.Random | None = None) -> None:
        self.size = size
        self.rng = rng or random.Random()
        self._next = 0

    def pick(self, candidates: Sequence[Endpoint], size: int = 0) -> list[Endpoint]:
        """`size` candidates (the sampler's own size if 0), or every one of a pool that small."""
        size = size or self.size
        count = len(candidates)
        start = self._next % count
        self._next = start + 1
        if count <= size:
            return [*candidates[start:], *candidates[:start]]
        random = self.rng.random
        return [candidates[start], *[candidates[int(random() * count)] for _ in range(size - 1)]]
