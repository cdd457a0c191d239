"""Routing in a fleet of 256 replicas: a choice looks at a bounded number of them, the pool's ready set
follows breakers, drains and states without being rebuilt per request, and load still reaches every replica."""

from __future__ import annotations

from collections import deque

import pytest

from servestack.compiled import is_compiled
from servestack.errors import UpstreamUnavailable
from servestack.gateway import Endpoint, EndpointState, EndpointTable
from servestack.gateway.fleet import breaker, routing
from servestack.gateway.fleet.breaker import CircuitBreaker
from servestack.gateway.fleet.routing import POLICIES, Attempt, RouteRequest, TtftCost
from servestack.gateway.fleet.routing.prefix import PrefixIndex, block_hashes
from servestack.stack import Routing
from tests.gateway.routing.policy_helpers import FakeClock

FLEET = 256
SYSTEMS = [f"group {g}: " + "you are a careful assistant for a shipping company. " * 12 for g in range(64)]


def fleet(policy: str, size: int = FLEET, **routing: float) -> EndpointTable:
    table = EndpointTable(Routing(policy=policy, **routing))  # type: ignore[arg-type]
    for i in range(size):
        table.upsert(Endpoint(f"r.{i}", "r", ("m",), f"http://127.0.0.1:{10000 + i}", ready=True))
    return table


def chat(system: str, question: str) -> RouteRequest:
    return RouteRequest({"messages": [{"role": "system", "content": system}, {"role": "user", "content": question}]})


def drive(table: EndpointTable, requests: list[RouteRequest], outstanding: int) -> dict[str, int]:
    """Route `requests` with `outstanding` of them in flight at once; how many each replica got."""
    pool = table.pool("m")
    held: deque[Attempt] = deque()
    got: dict[str, int] = {}
    for request in requests:
        attempt = pool.choose(request)
        attempt.endpoint.in_flight += 1
        got[attempt.endpoint.id] = got.get(attempt.endpoint.id, 0) + 1
        held.append(attempt)
        if len(held) > outstanding:
            done = held.popleft()
            done.endpoint.in_flight -= 1
            pool.finish(done, ok=True)
    return got


# These count calls by subclassing a class; compiled classes refuse interpreted subclasses, so in the
# compiled build (setup.py) they are skipped: the plain build, which CI's whole suite runs, runs them.
counts_by_subclassing = pytest.mark.skipif(
    is_compiled(breaker) or is_compiled(routing.prefix), reason="subclasses a class the compiled build compiles"
)


class CountingBreaker(CircuitBreaker):
    """A breaker that counts how often the request path asks it."""

    asked = 0

    def permits(self) -> bool:
        CountingBreaker.asked += 1
        return super().permits()


class CountingIndex(PrefixIndex):
    """A prefix index that counts per-replica lookups (ttft_cost makes one per replica it estimates)."""

    def __init__(self) -> None:
        super().__init__()
        self.lookups = 0

    def matched(self, endpoint_id: str, hashes: list[int]) -> int:  # type: ignore[override]
        self.lookups += 1
        return super().matched(endpoint_id, hashes)


@counts_by_subclassing
def test_a_choice_and_its_retry_decision_ask_no_breaker_of_a_healthy_fleet() -> None:
    table = fleet("round_robin")
    for endpoint in table.endpoints():
        endpoint.vitals.breaker = CountingBreaker()
    CountingBreaker.asked = 0
    pool = table.pool("m")
    for _ in range(100):
        attempt = pool.choose(chat(SYSTEMS[0], "q"))
        assert pool.untried([attempt.endpoint.id])
        pool.finish(attempt, ok=True)
    assert CountingBreaker.asked == 0  # before: every endpoint's breaker, twice per request


@counts_by_subclassing
def test_ttft_cost_estimates_as_many_replicas_per_choice_in_a_fleet_of_256_as_in_one_of_4() -> None:
    lookups = {}
    for size in (4, FLEET):
        table = fleet("ttft_cost", size)
        index = CountingIndex()
        table.pool("m").policy = TtftCost(index, clock=FakeClock())
        drive(table, [chat(SYSTEMS[i % 64], f"q{i}") for i in range(200)], outstanding=32)
        lookups[size] = index.lookups / 200
    assert lookups[4] == 4  # every replica once (dispatch reuses the chosen one's)
    assert lookups[FLEET] <= lookups[4]  # the holders of the prompt's prefix and others at random; once: all 256


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_every_policy_spreads_distinct_prompts_over_all_256_replicas(policy: str) -> None:
    table = fleet(policy)
    requests = [chat(f"{i} " + SYSTEMS[i % 64], f"q{i}") for i in range(FLEET * 12)]
    got = drive(table, requests, outstanding=32)
    assert len(got) == FLEET
    assert max(got.values()) <= 12 * 4  # nowhere near piled onto a few


@pytest.mark.parametrize("policy", ["cache_aware", "ttft_cost"])
def test_a_hot_prefix_stays_on_few_replicas_until_load_calls_for_all_of_them(policy: str) -> None:
    questions = [
        f"question {i}: " + "tell me about the parcel's route and its customs papers. " * 8 for i in range(FLEET * 80)
    ]
    light = drive(fleet(policy), [chat(SYSTEMS[0], q) for q in questions[:200]], outstanding=4)
    assert len(light) <= 8  # the prefix is cached there: it stays
    heavy = drive(fleet(policy), [chat(SYSTEMS[0], q) for q in questions], outstanding=FLEET * 70)
    assert len(heavy) == FLEET  # held load far beyond one replica's share: the prefix spreads everywhere


def test_the_ready_set_follows_breakers_drains_and_states() -> None:
    clock = FakeClock()
    table = EndpointTable(Routing(failure_threshold=1, open_seconds=5), clock=clock)
    for i in range(3):
        table.upsert(Endpoint(f"r.{i}", "r", ("m",), f"http://127.0.0.1:{10000 + i}", ready=True))
    pool = table.pool("m")

    def ready() -> list[str]:
        return [e.id for e in pool.ready]

    assert ready() == ["r.0", "r.1", "r.2"]
    r1 = table.get("r.1")
    assert r1 is not None
    r1.vitals.breaker.failed()  # its circuit opens
    assert ready() == ["r.0", "r.2"] and [e.id for e in pool.candidates()] == ["r.0", "r.2"]
    clock.advance(5.1)  # half-open: a candidate for one trial, still not in the ready set
    assert ready() == ["r.0", "r.2"] and [e.id for e in pool.candidates()] == ["r.0", "r.2", "r.1"]
    assert pool.untried(["r.0", "r.2"])
    r1.vitals.breaker.dispatched()
    assert not pool.untried(["r.0", "r.2"])  # its trial is out
    r1.vitals.breaker.succeeded()
    assert ready() == ["r.0", "r.1", "r.2"]
    table.upsert(Endpoint("r.2", "r", ("m",), "http://127.0.0.1:10002", state=EndpointState.STOPPED))
    assert ready() == ["r.0", "r.1"]
    r0 = table.get("r.0")
    assert r0 is not None
    r0.vitals.draining = True
    assert ready() == ["r.1"]
    table.remove("r.1")
    assert ready() == [] and not pool.untried([])
    with pytest.raises(UpstreamUnavailable, match="being stopped"):
        pool.choose(chat(SYSTEMS[0], "q"))
    table.upsert(Endpoint("r.0", "r", ("m",), "http://127.0.0.1:10000", state=EndpointState.STARTING))
    table.upsert(Endpoint("r.0", "r", ("m",), "http://127.0.0.1:10000", ready=True))  # restarted: drain over
    assert ready() == ["r.0"]
    assert not table.get("r.1") and not any(w for w in r1.vitals.watchers)  # a removed endpoint is let go


def test_an_endpoint_in_two_pools_leaves_both_ready_sets_when_its_circuit_opens() -> None:
    table = EndpointTable(Routing(failure_threshold=1))
    table.upsert(Endpoint("a.0", "a", ("x", "y"), "http://127.0.0.1:10000", ready=True))
    table.upsert(Endpoint("b.0", "b", ("x", "y"), "http://127.0.0.1:10001", ready=True))
    shared = table.get("a.0")
    assert shared is not None
    shared.vitals.breaker.trip()
    assert [e.id for e in table.pool("x").ready] == ["b.0"] == [e.id for e in table.pool("y").ready]


def test_the_prefix_index_names_the_holders_of_the_longest_prefix() -> None:
    index = PrefixIndex()
    long, other = block_hashes(SYSTEMS[0] * 2), block_hashes(SYSTEMS[1])
    index.insert("a", long[:3])
    index.insert("b", long)
    index.insert("c", other)
    everyone = {"a": "A", "b": "B", "c": "C"}.get
    assert index.longest(long, everyone, 4) == (len(long), ["B"])
    assert index.longest(long, {"a": "A", "c": "C"}.get, 4) == (3, ["A"])  # b may not take it: a shorter prefix
    assert index.longest(other, everyone, 4) == (len(other), ["C"])
    assert index.longest(block_hashes("nobody has sent this " * 20), everyone, 4) == (0, [])
    count, holders = index.longest(long[:2], everyone, 4)
    assert count == 2 and sorted(holders) == ["A", "B"]
    index.forget("b")
    assert index.longest(long, everyone, 4) == (3, ["A"])


def test_eviction_takes_a_replica_off_the_holders_of_the_blocks_it_dropped() -> None:
    index = PrefixIndex(capacity_tokens=256)  # 8 blocks
    first, second = block_hashes(SYSTEMS[2] * 3), block_hashes(SYSTEMS[3] * 3)
    index.insert("a", first[:8])
    index.insert("a", second[:8])  # evicts every block of `first`
    assert index.longest(first, {"a": "A"}.get, 4) == (0, [])
    assert index.longest(second, {"a": "A"}.get, 4) == (8, ["A"])
