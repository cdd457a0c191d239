"""The load generator against a fake server: counts, usage-based tokens, turns, errors (no timing asserted)."""

from __future__ import annotations

import asyncio

import pytest

from servestack.bench import Concurrency, Limits, Rate, Slo, Target, build_workload, run_levels
from servestack.bench.loadgen import Level
from servestack.bench.stats import Summary
from tests.bench.fake_openai import FakeOpenAI


def run(
    fake: FakeOpenAI,
    *,
    stream: bool = True,
    dataset: str = "random",
    level: Level = Concurrency(4),
    requests: int = 24,
    warmup: int = 0,
) -> Summary:
    workload = build_workload(dataset, requests=40, input_len=12, output_len=5, seed=1, turns=2)
    target = Target(url=fake.url + "/v1/chat/completions", model="fake-model", stream=stream)
    limits = Limits(requests=requests)
    (summary,) = asyncio.run(run_levels(target, workload, [level], limits, slo=Slo(ttft=60.0), warmup=warmup))
    return summary


@pytest.mark.parametrize("stream", [True, False])
def test_counts_and_tokens_come_from_usage(fake: FakeOpenAI, stream: bool) -> None:
    summary = run(fake, stream=stream)
    assert (summary.requests, summary.completed, summary.errors) == (24, 24, {})
    assert summary.output_tokens == 24 * 5
    assert summary.prompt_tokens == 24 * 12
    assert summary.without_usage == 0
    assert summary.goodput_fraction == 1.0
    assert len(fake.received) == 24
    if stream:
        assert all(body["stream_options"] == {"include_usage": True} for body in fake.received)
        assert summary.itl is not None and summary.itl.count == 24 * 4  # gaps between 5 chunks
    else:
        assert all("stream" not in body for body in fake.received)
        assert summary.itl is None


@pytest.mark.parametrize("stream", [True, False])
def test_without_usage_tokens_are_counted_from_the_answer(stream: bool) -> None:
    fake = FakeOpenAI(usage=False).start()
    try:
        summary = run(fake, stream=stream, requests=10)
    finally:
        fake.stop()
    assert summary.completed == 10
    assert summary.without_usage == 10
    assert summary.output_tokens == 10 * 5  # 5 chunks, or 5 words


def test_errors_are_counted_by_kind() -> None:
    fake = FakeOpenAI(fail_every=4).start()
    try:
        summary = run(fake, requests=20)
    finally:
        fake.stop()
    assert summary.requests == 20
    assert summary.errors == {"HTTP 500": 5}
    assert summary.completed == 15
    assert "boom" in summary.error_examples["HTTP 500"]


def test_multi_turn_sends_the_earlier_answer_back(fake: FakeOpenAI) -> None:
    summary = run(fake, dataset="multi-turn", level=Concurrency(1), requests=4)
    assert summary.completed == 4
    first, second = fake.received[0]["messages"], fake.received[1]["messages"]
    assert len(first) == 1 and len(second) == 3
    assert second[0] == first[0]
    assert second[1] == {"role": "assistant", "content": "w0 w1 w2 w3 w4"}


def test_rate_mode_sends_the_requests_asked_for(fake: FakeOpenAI) -> None:
    summary = run(fake, level=Rate(400.0), requests=30)
    assert (summary.requests, summary.completed, summary.rate) == (30, 30, 400.0)


def test_warmup_requests_are_not_counted(fake: FakeOpenAI) -> None:
    summary = run(fake, requests=10, warmup=6)
    assert summary.requests == 10
    assert len(fake.received) == 16


def test_an_unreachable_server_is_a_connect_error() -> None:
    workload = build_workload("random", requests=3, input_len=4, output_len=2, seed=0)
    target = Target(url="http://127.0.0.1:9/v1/chat/completions", model="m")
    (summary,) = asyncio.run(run_levels(target, workload, [Concurrency(1)], Limits(requests=3), slo=Slo()))
    assert summary.errors == {"connect": 3}
