"""The swap rule: the fewest services, then the fewest busy, then the lowest priorities, then the longest idle."""

from __future__ import annotations

import pytest

from servestack.controller.eviction import Candidate, choose_victims
from servestack.errors import BadRequest
from servestack.gateway.ollama.format import FOREVER, keep_alive_seconds


def room(needed: float, claims: dict[str, float]):  # type: ignore[no-untyped-def]
    """`fits`: the newcomer needs `needed` of one GPU, the others hold `claims` of it."""
    return lambda leaving: needed + sum(share for name, share in claims.items() if name not in leaving) <= 1.0


def names(victims: list[Candidate] | None) -> list[str] | None:
    return None if victims is None else sorted(c.name for c in victims)


@pytest.mark.parametrize(
    ("candidates", "claims", "needed", "expected"),
    [
        # One big idle service frees enough: it goes alone, rather than two small ones.
        (
            [Candidate("big", 0, 10), Candidate("s1", 0, 99), Candidate("s2", 0, 99)],
            {"big": 0.6, "s1": 0.2, "s2": 0.2},
            0.6,
            ["big"],
        ),
        # Two that each free enough: the lower priority goes.
        ([Candidate("high", 2, 99), Candidate("low", 0, 1)], {"high": 0.5, "low": 0.5}, 0.5, ["low"]),
        # Same priority: the one idle longer goes.
        ([Candidate("recent", 0, 1), Candidate("old", 0, 50)], {"recent": 0.5, "old": 0.5}, 0.5, ["old"]),
        # A busy one (allowed only under the fairness hold) goes after every idle choice of the same size.
        ([Candidate("busy", 0, 0, busy=True), Candidate("idle", 5, 1)], {"busy": 0.5, "idle": 0.5}, 0.5, ["idle"]),
        # Nothing that can go frees enough: wait.
        ([Candidate("small", 0, 9)], {"small": 0.2, "pinned": 0.7}, 0.5, None),
        # It fits already: nobody goes.
        ([Candidate("a", 0, 9)], {"a": 0.3}, 0.5, []),
    ],
)
def test_the_rule_that_decides_swap_order(
    candidates: list[Candidate], claims: dict[str, float], needed: float, expected: list[str] | None
) -> None:
    assert names(choose_victims(candidates, room(needed, claims))) == expected


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (0, 0.0),
        ("0", 0.0),
        (300, 300.0),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("10s", 10.0),
        (-1, FOREVER),
        ("-1m", FOREVER),
        ("-1", FOREVER),
        (2.5, 2.5),
    ],
)
def test_ollama_keep_alive_values(value: object, seconds: float) -> None:
    assert keep_alive_seconds(value) == seconds


@pytest.mark.parametrize("value", ["soon", "5 minutes", True, [1]])
def test_a_bad_keep_alive_is_a_400_naming_it(value: object) -> None:
    with pytest.raises(BadRequest) as raised:
        keep_alive_seconds(value)
    assert raised.value.param == "keep_alive"
