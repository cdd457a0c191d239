"""The first-byte deadline: its automatic budget, its end while the replica is silent, its patience
while the replica answers others, and an early end when the replica stalls."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from servestack.gateway import Endpoint
from servestack.gateway.breaker import CircuitBreaker
from servestack.gateway.deadline import LATE, STALLED, FirstByteDeadline, auto_budget
from servestack.gateway.endpoint import Vitals
from servestack.gateway.exchange import Exchange

pytestmark = pytest.mark.anyio


def exchange(path: str, stream: bool, **payload: Any) -> Exchange:
    return Exchange(path=path, model="m", stream=stream, body=b"", payload=payload, headers=[])


def test_the_automatic_budget_scales_with_the_prompt_and_what_a_whole_answer_may_generate() -> None:
    known = Endpoint("m.0", "m", ("m",), "http://x", ready=True, context_length=4096)
    unknown = Endpoint("m.1", "m", ("m",), "http://y", ready=True)
    chat = {"messages": [{"role": "user", "content": "x" * 1000}]}
    assert auto_budget(exchange("/v1/chat/completions", True, **chat), known) == pytest.approx(30 + 10)
    assert auto_budget(exchange("/v1/chat/completions", False, max_tokens=100, **chat), known) == pytest.approx(65)
    # Without max_tokens a whole answer may fill the context the prompt leaves (4,096 - 4 tokens at least).
    assert auto_budget(exchange("/v1/chat/completions", False, **chat), known) == pytest.approx(40 + 0.25 * 4092)
    assert auto_budget(exchange("/v1/chat/completions", False, **chat), unknown) == pytest.approx(40 + 0.25 * 4096)
    assert auto_budget(exchange("/v1/embeddings", False, input="x" * 1000), known) == pytest.approx(30)
    sglang = exchange("/generate", False, text="hi", sampling_params={"max_new_tokens": 8})
    assert auto_budget(sglang, known) == pytest.approx(30 + 0.02 + 2)


async def wait_in(deadline: FirstByteDeadline, seconds: float) -> None:
    async with deadline:
        await asyncio.sleep(seconds)


async def test_a_deadline_ends_the_wait_on_a_silent_replica() -> None:
    vitals = Vitals(CircuitBreaker())
    fixed = FirstByteDeadline(vitals, 0.05, extend=False, retryable=False)
    with pytest.raises(TimeoutError, match="did not begin its answer in time"):
        await wait_in(fixed, 5)
    assert fixed.reason == LATE and not vitals.waiting
    silent = FirstByteDeadline(vitals, 0.05, extend=True, retryable=False)
    with pytest.raises(TimeoutError):
        await wait_in(silent, 5)


async def test_the_automatic_deadline_waits_while_the_replica_answers_others() -> None:
    vitals = Vitals(CircuitBreaker())
    patient = FirstByteDeadline(vitals, 0.05, extend=True, retryable=False)
    strict = FirstByteDeadline(vitals, 0.05, extend=False, retryable=False)

    async def busy_engine() -> None:
        for _ in range(20):  # 0.4 s of chunks to other requests
            vitals.progress += 1
            await asyncio.sleep(0.02)

    engine = asyncio.create_task(busy_engine())
    await wait_in(patient, 0.3)  # 6 budgets long, and no TimeoutError
    with pytest.raises(TimeoutError):
        await wait_in(strict, 0.3)  # a fixed deadline is enforced as given
    await engine


async def test_a_stall_ends_the_wait_at_once_and_a_clients_cancel_stays_a_cancel() -> None:
    vitals = Vitals(CircuitBreaker())
    deadline = FirstByteDeadline(vitals, 60, extend=True, retryable=True)
    waiting = asyncio.create_task(wait_in(deadline, 60))
    await asyncio.sleep(0.01)
    assert vitals.waiting == {deadline}
    deadline.expire(STALLED)
    with pytest.raises(TimeoutError, match="stopped answering"):
        await waiting

    other = FirstByteDeadline(vitals, 60, extend=True, retryable=True)
    waiting = asyncio.create_task(wait_in(other, 60))
    await asyncio.sleep(0.01)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert other.reason is None and not vitals.waiting
