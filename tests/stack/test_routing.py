"""The stack file's `routing:` section: defaults, per-model policies, and the mistakes it refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from servestack.errors import StackError
from servestack.stack import Routing, load_stack

STACK = """\
version: 1
services:
  chat:
    engine: sim
    model: sim-model
    served_names: [chat, chat-alias]
  code:
    engine: sim
    model: sim-model
"""


def load(tmp_path: Path, routing: str) -> Routing:
    path = tmp_path / "stack.yaml"
    path.write_text(STACK + routing)
    return load_stack(path, environ={}).routing


def test_defaults_when_the_section_is_absent(tmp_path: Path) -> None:
    routing = load(tmp_path, "")
    assert routing == Routing()
    assert routing.policy_for("chat") == "ttft_cost"
    assert (routing.retries, routing.retry_budget, routing.failure_threshold) == (2, 0.2, 3)


def test_a_default_policy_and_per_model_overrides(tmp_path: Path) -> None:
    routing = load(tmp_path, "routing:\n  policy: least_load\n  models:\n    chat-alias: cache_aware\n  retries: 0\n")
    assert routing.policy_for("chat-alias") == "cache_aware"
    assert routing.policy_for("code") == "least_load"
    assert routing.retries == 0


@pytest.mark.parametrize(
    ("routing", "expected"),
    [
        ("routing:\n  policy: fastest\n", "routing.policy: Input should be 'round_robin', 'least_load'"),
        ("routing:\n  models:\n    nope: round_robin\n", "routing.models names 'nope', which no service serves"),
        ("routing:\n  retry_budget: 2\n", "routing.retry_budget: Input should be less than or equal to 1"),
        ("routing:\n  probe_intervall: 2\n", "routing.probe_intervall: unknown key (did you mean 'probe_interval'?)"),
    ],
)
def test_mistakes_name_the_key(tmp_path: Path, routing: str, expected: str) -> None:
    with pytest.raises(StackError) as info:
        load(tmp_path, routing)
    assert expected in info.value.message
