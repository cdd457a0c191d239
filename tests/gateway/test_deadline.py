"""The first-byte deadline: its automatic budget, its end while the replica is silent, its patience
while the replica answers others, and an early end when the replica stalls."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from servestack.gateway import Endpoint
from servestack.gateway.fleet.pool import Pool
from servestack.gateway.fleet.routing import RoundRobin
from servestack.gateway.relay.deadline import LATE, FirstByteDeadline, auto_budget
from servestack.gateway.relay.exchange import Exchange
from servestack.gateway.relay.monitor import STALLED

pytestmark = pytest.mark.anyio


def exchange(path: str, stream: bool, **payload: Any) -> Exchange:
    return Exchange(path=path, pool=Pool("m", RoundRobin()), stream=stream, body=b"", payload=payload, headers=[])


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


async def waiting_on(deadline: FirstByteDeadline) -> asyncio.Task[None]:
    """A task that waits inside `deadline` for an answer that never comes."""

    async def wait() -> None:
        async with deadline:
            await asyncio.Event().wait()

    task = asyncio.create_task(wait())
    await asyncio.sleep(0)
    return task


CHAT = {"messages": [{"role": "user", "content": "x" * 1000}]}


async def test_a_fixed_deadline_ends_the_wait_when_it_is_due() -> None:
    hung = Endpoint("m.0", "m", ("m",), "http://x", ready=True)
    deadline = FirstByteDeadline(exchange("/v1/chat/completions", True, **CHAT), hung, 2.0, retryable=False)
    task = await waiting_on(deadline)
    assert hung.vitals.waiting == {deadline}
    hung.vitals.progress += 1  # a fixed deadline does not care what else the replica does
    deadline.check(deadline.since + 1.9)
    await asyncio.sleep(0)
    assert not task.done()
    deadline.check(deadline.since + 2.0)
    with pytest.raises(TimeoutError, match="did not begin its answer in time"):
        await task
    assert deadline.reason == LATE and not hung.vitals.waiting


async def test_the_automatic_deadline_waits_while_the_replica_answers_others_and_not_longer() -> None:
    busy = Endpoint("m.0", "m", ("m",), "http://x", ready=True)
    request = exchange("/v1/chat/completions", True, **CHAT)
    budget = auto_budget(request, busy)  # 40 s
    deadline = FirstByteDeadline(request, busy, None, retryable=False)
    task = await waiting_on(deadline)
    began = deadline.since
    deadline.check(began + budget - 1)
    busy.vitals.progress += 5  # chunks of other requests: the engine is busy, not wedged
    deadline.check(began + budget)
    await asyncio.sleep(0)
    assert not task.done() and deadline.since == began + budget  # a fresh budget from here
    # More than a whole budget without a byte to anyone (exactly one could round below it: loop times are floats)
    deadline.check(began + 2 * budget + 0.5)
    done, _ = await asyncio.wait({task}, timeout=5)
    assert done, "the deadline did not end the wait"
    with pytest.raises(TimeoutError, match="did not begin its answer in time"):
        task.result()


async def test_a_stall_ends_the_wait_at_once_and_a_clients_cancel_stays_a_cancel() -> None:
    endpoint = Endpoint("m.0", "m", ("m",), "http://x", ready=True)
    deadline = FirstByteDeadline(exchange("/v1/chat/completions", True, **CHAT), endpoint, None, retryable=True)
    task = await waiting_on(deadline)
    deadline.expire(STALLED)
    with pytest.raises(TimeoutError, match="stopped answering"):
        await task

    other = FirstByteDeadline(exchange("/v1/chat/completions", True, **CHAT), endpoint, None, retryable=True)
    task = await waiting_on(other)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert other.reason is None and not endpoint.vitals.waiting


def test_the_setting_is_auto_by_default_a_number_or_zero() -> None:
    from pydantic import ValidationError

    from servestack.stack import TimeoutsConfig

    assert TimeoutsConfig().first_byte == "auto"
    assert TimeoutsConfig(first_byte=0).first_byte == 0 and TimeoutsConfig(first_byte=2.5).first_byte == 2.5
    for bad in ("soon", -1, None, True):
        with pytest.raises(ValidationError, match="expected auto, a number of seconds, or 0"):
            TimeoutsConfig(first_byte=bad)
