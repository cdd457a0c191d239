"""The planner against real engines' startup logs (tests/plan/corpus, replayed by bench/planner_accuracy.py).

Every case whose log shows a verdict gets the same verdict from the plan. Every logged weights and KV figure
is within the targets (weights ±5%, KV ±10%), or listed in replay.yaml's `not_modelled` with the reason
it cannot be modelled yet: a listed figure that comes within the target fails too, so the list stays true.
docs/planner-accuracy.md is the script's output for the same replay.
"""

from __future__ import annotations

import pytest

from planner_accuracy import DOC, Case, load_cases, render, replay

CASES = load_cases()


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_the_plan_agrees_with_the_engine_log(case: Case) -> None:
    result = replay(case)
    if result.plan is None:
        assert case.replay["skip"], "a skipped case says why"
        return
    if result.logged_verdict is not None:
        assert result.verdict == result.logged_verdict
    else:
        assert case.replay["why"]["verdict"], "a case without a verdict says why"
    for name, figure in (("weights", result.weights), ("kv", result.kv)):
        listed = result.not_modelled.get(name)
        if figure is None:
            assert listed is None, f"{name} is listed as not modelled but the case logs no such figure"
        elif listed:
            assert not figure.within, f"{name} is now within ±{figure.tolerance:.0%} ({figure.error:+.1%}): unlist it"
        else:
            assert figure.within, f"{name}: logged {figure.logged:,.2f}, planned {figure.predicted:,.2f} {figure.unit}"


def test_the_accuracy_doc_is_what_the_replay_prints_now() -> None:
    assert DOC.read_text() == render([replay(case) for case in CASES]), "run: python bench/planner_accuracy.py --write"
