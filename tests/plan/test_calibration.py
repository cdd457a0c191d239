"""The plan beside what the engine allocated at its last start here with the same set-up (HostFacts.calibration).

A record applies only to the set-up it was made with; a figure more than 10% off the prediction is the
warning `calibration-differs`, within 10% it is only shown.
"""

from __future__ import annotations

import pytest
from plan_fixtures import LLAMA_8B, facts

from servestack.engines.startup import Allocation
from servestack.gpus import parse_inventory
from servestack.plan import HostFacts, Plan, Severity, make_plan
from servestack.plan.calibration import CalibrationRecord, predicted_of, record_of
from servestack.plan.export import plan_to_dict
from servestack.stack import parse_stack

GIB = 2**30
STACK = f"""
services:
  chat:
    engine: vllm
    model: {LLAMA_8B}
    gpus: [0]
    context_length: 8192
"""


def planned(stack_text: str = STACK, records: tuple[CalibrationRecord, ...] = (), gpus: str = "1xH100-80GB") -> Plan:
    stack = parse_stack(stack_text, source="stack.yaml", environ={})
    host = HostFacts(calibration={"chat": records}) if records else None
    return make_plan(stack, parse_inventory(gpus), {"chat": facts(LLAMA_8B)}, host=host)


def measured(
    kv_tokens: float, weights_gib: float | None = None, *, stack_text: str = STACK, when: float = 1.0
) -> CalibrationRecord:
    """A record of a start with `stack_text`'s set-up where the engine allocated `kv_tokens` × the prediction."""
    plan = planned(stack_text).services["chat"]
    assert plan.kv_tokens is not None and plan.memory is not None
    weights = round(weights_gib * GIB) if weights_gib else None
    return record_of(plan, 0, Allocation(kv_tokens=round(plan.kv_tokens * kv_tokens), weights_bytes=weights), when)


def findings(plan: Plan) -> list[str]:
    return [f.code for f in plan.all_findings() if f.code == "calibration-differs"]


def test_a_record_within_ten_percent_is_shown_without_a_warning() -> None:
    record = measured(1.08)
    plan = planned(records=(record,))
    assert plan.services["chat"].calibration == record
    assert findings(plan) == []


def test_a_figure_more_than_ten_percent_off_is_a_warning_naming_it() -> None:
    plan = planned(records=(measured(0.8),))
    [warning] = [f for f in plan.all_findings() if f.code == "calibration-differs"]
    predicted = plan.services["chat"].kv_tokens
    assert predicted is not None
    assert warning.severity is Severity.WARNING and warning.service == "chat"
    assert f"KV tokens {round(predicted * 0.8):,} where the plan predicts {predicted:,} (-20%)" in warning.message
    assert warning.key == ("services", "chat")


def test_weights_are_compared_too() -> None:
    plan = planned(records=(measured(1.0, weights_gib=20.0),))
    [warning] = [f for f in plan.all_findings() if f.code == "calibration-differs"]
    assert "weights 20.0 GiB where the plan predicts 15.0 GiB (+34%)" in warning.message
    assert "KV tokens" not in warning.message


def test_the_latest_record_of_this_set_up_is_the_one_compared() -> None:
    old, new = measured(0.5, when=1.0), measured(1.02, when=2.0)
    plan = planned(records=(new, old))
    assert plan.services["chat"].calibration == new and findings(plan) == []


@pytest.mark.parametrize(
    "change",
    [
        ("context_length: 8192", "context_length: 4096"),
        ("    gpus: [0]", "    gpus: [0]\n    memory_fraction: 0.8"),
        ("    gpus: [0]", "    gpus: [0]\n    args: [--max-num-seqs, '8']"),
        ("    gpus: [0]", "    gpus: [0]\n    kv_cache_dtype: fp8"),
    ],
)
def test_a_record_of_another_set_up_does_not_apply(change: tuple[str, str]) -> None:
    other = STACK.replace(*change)
    plan = planned(records=(measured(0.5, stack_text=other),))
    assert plan.services["chat"].calibration is None and findings(plan) == []


def test_a_record_of_a_replica_the_stack_no_longer_has_does_not_apply() -> None:
    one = STACK.replace("    gpus: [0]\n", "")
    two = one + "    replicas: 2\n"
    plan = planned(two, gpus="2xH100-80GB").services["chat"]
    assert plan.kv_tokens is not None and plan.gpus_of(1) == (1,)
    record = record_of(plan, 1, Allocation(kv_tokens=plan.kv_tokens), 1.0)
    assert planned(two, (record,), gpus="2xH100-80GB").services["chat"].calibration == record
    assert planned(one, (record,), gpus="2xH100-80GB").services["chat"].calibration is None


def test_the_json_has_the_record_and_each_figure_against_the_prediction() -> None:
    plan = planned(records=(measured(0.8),))
    calibration = plan_to_dict(plan)["services"]["chat"]["calibration"]
    predicted = predicted_of(plan.services["chat"]).kv_tokens
    assert calibration["allocated"]["kv_tokens"] == round(predicted * 0.8)
    assert calibration["compared"] == [
        {"figure": "kv_tokens", "predicted": predicted, "allocated": round(predicted * 0.8), "error": -0.2}
    ]
    assert plan_to_dict(planned())["services"]["chat"]["calibration"] is None
