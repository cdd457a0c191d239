"""Which loaded on-demand services to unload so that another one fits: the swap rule, as a pure function.

Of the services that may go, the set chosen is the one that

  1. has the fewest services,
  2. holds the fewest busy ones (busy ones may go only under the fairness hold, see ondemand.py),
  3. has the lowest priorities (compared highest first: a set without a priority-2 service beats one with it),
  4. has been idle the longest (sum of idle seconds),

among the sets whose removal lets the newcomer fit (`fits`, from the plan's residency). A sleeping engine
may be among them: it holds only a CUDA context, and going means its process stops. No set: wait.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

MAX_CANDIDATES = 12  # every subset is tried; services beyond this many (rare on one box) are not considered


@dataclass(frozen=True)
class Candidate:
    """A loaded (or sleeping) on-demand service that could be unloaded."""

    name: str
    priority: int
    idle_seconds: float  # 0 while busy
    busy: bool = False  # requests in flight or waiting
    asleep: bool = False


Fits = Callable[[frozenset[str]], bool]  # whether the newcomer fits once these services are gone


def choose_victims(candidates: Sequence[Candidate], fits: Fits) -> list[Candidate] | None:
    """The set to unload (by the rule above), [] when the newcomer fits already, None when no set makes room."""
    if fits(frozenset()):
        return []
    pool = sorted(candidates, key=_cost)[:MAX_CANDIDATES]
    for size in range(1, len(pool) + 1):
        sets: list[tuple[Candidate, ...]] = [
            combo for combo in itertools.combinations(pool, size) if fits(frozenset(c.name for c in combo))
        ]
        if sets:
            best = min(sets, key=_set_cost)
            return list(best)
    return None


def _cost(candidate: Candidate) -> tuple[bool, int, float]:
    return (candidate.busy, candidate.priority, -candidate.idle_seconds)


def _set_cost(combo: tuple[Candidate, ...]) -> tuple[int, tuple[int, ...], float]:
    busy = sum(c.busy for c in combo)
    priorities = tuple(sorted((c.priority for c in combo), reverse=True))
    return (busy, priorities, -sum(c.idle_seconds for c in combo))
