"""Tensor-parallel validity: an engine's own sharding rules (`tp_rules` on its adapter) applied to a model."""

from __future__ import annotations

from servestack.engines import get_engine
from servestack.engines.tp import TpProblem, moe_intermediate
from servestack.modelinfo import ModelFacts


def tp_problems(facts: ModelFacts, tp: int, engine: str, *, expert_parallel: bool = False) -> list[TpProblem]:
    """Why `tp` cannot work for `facts` on `engine` (empty: it can)."""
    rules = get_engine(engine).tp_rules
    if expert_parallel:  # experts are spread over the ranks instead of split
        rules = tuple(rule for rule in rules if rule is not moe_intermediate)
    return [problem for rule in rules if (problem := rule(facts, tp)) is not None]


def valid_tp_sizes(facts: ModelFacts, engine: str, up_to: int) -> list[int]:
    return [tp for tp in range(1, up_to + 1) if not tp_problems(facts, tp, engine)]
