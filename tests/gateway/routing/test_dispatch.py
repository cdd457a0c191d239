"""The dispatcher on a fake relay: where retries go, when they stop, and what a cancelled attempt leaves behind."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from servestack.errors import UpstreamError, UpstreamUnavailable
from servestack.gateway import Endpoint, EndpointTable
from servestack.gateway.fleet.routing import TtftCost
from servestack.gateway.relay.dispatch import Dispatcher
from servestack.gateway.relay.exchange import Exchange
from servestack.gateway.relay.retry import RetryBudget
from servestack.stack import Routing

pytestmark = pytest.mark.anyio


class FakeRelay:
    """Plays one outcome per attempt: an HTTP status, or an exception to raise."""

    def __init__(self, *outcomes: int | BaseException) -> None:
        self.outcomes = list(outcomes)
        self.calls: list[tuple[str, bool]] = []

    async def relay(self, exchange: Exchange, endpoint: Endpoint, send: Any) -> None:
        self.calls.append((endpoint.id, exchange.retryable))
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        exchange.status = outcome


class Setup:
    """A pool `m` of `replicas` endpoints, a dispatcher, and the fake relay it sends to."""

    def __init__(self, relay: FakeRelay, replicas: int = 3, budget: RetryBudget | None = None, **routing: Any):
        self.relay = relay
        self.table = EndpointTable(Routing(**{"policy": "round_robin", **routing}))
        for i in range(replicas):
            self.table.upsert(Endpoint(f"e{i}", "s", ("m",), f"http://e{i}", ready=True))
        self.dispatcher = Dispatcher(self.table, budget=budget)

    def exchange(self, stream: bool = False) -> Exchange:
        payload = {"model": "m", "prompt": "hello " * 100, "stream": stream}
        pool = self.table.pool("m")
        return Exchange(path="/v1/completions", pool=pool, stream=stream, body=b"", payload=payload, headers=[])

    async def dispatch(self, exchange: Exchange | None = None) -> Exchange:
        exchange = exchange or self.exchange()
        await self.dispatcher.dispatch(exchange, nothing, self.relay.relay)
        return exchange


async def nothing(message: Any) -> None:
    return None


async def test_a_failure_before_the_first_byte_moves_to_another_replica() -> None:
    relay = FakeRelay(UpstreamUnavailable("refused"), 200)
    setup = Setup(relay)
    ex = await setup.dispatch()
    tried = [e for e, _ in relay.calls]
    assert tried[0] == "e0" and len(set(tried)) == 2
    assert ex.attempts == 2 and ex.status == 200 and ex.error is None
    assert setup.table.get("e0").vitals.breaker.failures == 1  # type: ignore[union-attr]


async def test_the_last_try_relays_whatever_the_engine_answers() -> None:
    relay = FakeRelay(UpstreamError("boom"), UpstreamError("boom"), 500)
    await Setup(relay, retries=2).dispatch()
    assert sorted(e for e, _ in relay.calls) == ["e0", "e1", "e2"]  # never the same replica twice
    assert [retryable for _, retryable in relay.calls] == [True, True, False]


async def test_no_retry_without_another_replica_or_budget() -> None:
    relay = FakeRelay(UpstreamError("boom"))
    with pytest.raises(UpstreamError):
        await Setup(relay, replicas=1).dispatch()
    assert relay.calls == [("e0", False)]
    spent = RetryBudget(0.2, burst=1, min_per_second=0)
    assert spent.withdraw()
    relay = FakeRelay(UpstreamError("boom"))
    with pytest.raises(UpstreamError):
        await Setup(relay, budget=spent).dispatch()
    assert relay.calls == [("e0", False)]


async def test_a_cancelled_attempt_releases_what_the_policy_counted() -> None:
    relay = FakeRelay(asyncio.CancelledError())
    setup = Setup(relay, policy="ttft_cost")
    policy = setup.table.pool("m").policy
    assert isinstance(policy, TtftCost)
    with pytest.raises(asyncio.CancelledError):
        await setup.dispatch(setup.exchange(stream=True))
    endpoint = setup.table.get(relay.calls[0][0])
    assert endpoint is not None
    assert policy.estimate(endpoint, 1, []) < 0.01
