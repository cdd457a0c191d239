"""Datasets are deterministic for a seed, and have the shapes their names promise."""

from __future__ import annotations

from pathlib import Path

import pytest

from servestack.bench import build_workload
from servestack.bench.workload import file_workload
from servestack.errors import BenchError


@pytest.mark.parametrize("dataset", ["random", "shared-prefix", "multi-turn"])
def test_same_seed_same_workload_other_seed_other_workload(dataset: str) -> None:
    def make(seed: int) -> object:
        return build_workload(dataset, requests=64, input_len=32, output_len=8, seed=seed)

    assert make(1) == make(1)
    assert make(1) != make(2)


def test_random_prompts_have_the_asked_lengths() -> None:
    workload = build_workload("random", requests=20, input_len=50, output_len=7, seed=0)
    assert workload.requests == 20
    for conversation in workload.conversations:
        (turn,) = conversation.turns
        assert len(turn.text.split()) == 50
        assert turn.max_tokens == 7


def test_shared_prefix_groups_share_their_system_prompt() -> None:
    workload = build_workload("shared-prefix", requests=64, input_len=200, output_len=8, seed=3)
    groups: dict[int | None, set[str | None]] = {}
    for conversation in workload.conversations:
        groups.setdefault(conversation.group, set()).add(conversation.system)
    assert len(groups) == 4  # 64 requests, 16 per group
    assert all(len(systems) == 1 for systems in groups.values())
    assert len({next(iter(s)) for s in groups.values()}) == 4
    assert [c.group for c in workload.conversations[:16]] != [workload.conversations[0].group] * 16  # shuffled


def test_multi_turn_conversations_have_turns() -> None:
    workload = build_workload("multi-turn", requests=12, input_len=10, output_len=8, seed=0, turns=3)
    assert len(workload.conversations) == 4
    assert all(len(c.turns) == 3 for c in workload.conversations)
    assert workload.requests == 12


def test_jsonl_file_accepts_prompts_turns_and_messages(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text(
        '{"prompt": "hello", "max_tokens": 5}\n'
        "\n"
        '{"turns": ["a", "b"]}\n'
        '{"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]}\n'
    )
    workload = build_workload(str(path), requests=1, input_len=1, output_len=9, seed=0)
    first, second, third = workload.conversations
    assert first.turns[0].text == "hello" and first.turns[0].max_tokens == 5
    assert [t.text for t in second.turns] == ["a", "b"] and second.turns[0].max_tokens == 9
    assert third.history == ({"role": "system", "content": "be brief"},) and third.turns[0].text == "hi"


@pytest.mark.parametrize("line", ["not json", "[1]", '{"prompt": 3}', '{"prompt": "x", "max_tokens": 0}'])
def test_bad_jsonl_lines_name_the_line(tmp_path: Path, line: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "ok"}\n' + line + "\n")
    with pytest.raises(BenchError, match=r"bad\.jsonl:2"):
        file_workload(path, 8)


def test_unknown_dataset_is_an_error() -> None:
    with pytest.raises(BenchError, match="unknown dataset"):
        build_workload("sharegpt", requests=1, input_len=1, output_len=1, seed=0)
