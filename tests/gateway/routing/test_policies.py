"""Each routing policy on hand-made endpoints: what it picks, and what it learns."""

from __future__ import annotations

from collections import Counter

import pytest

from servestack.gateway import EndpointTable
from servestack.gateway.fleet.endpoint import Endpoint, EngineLoad
from servestack.gateway.fleet.routing import (
    Attempt,
    CacheAware,
    LeastLoad,
    RoundRobin,
    RouteRequest,
    TtftCost,
    make_policy,
)
from servestack.gateway.fleet.routing.prefix import PrefixIndex
from servestack.stack import Routing
from tests.gateway.routing.policy_helpers import FakeClock, endpoint

LONG = "You are the assistant of a travel agency. Answer briefly and politely. " * 100  # ~7,100 chars


def chat(system: str, question: str) -> RouteRequest:
    return RouteRequest({"messages": [{"role": "system", "content": system}, {"role": "user", "content": question}]})


def send(policy: CacheAware, candidates: list[Endpoint], request: RouteRequest, now: float = 100.0) -> str:
    chosen = policy.choose(candidates, request)
    policy.dispatched(Attempt(chosen, request, now))
    return str(chosen.id)


def test_round_robin_takes_turns() -> None:
    a, b, c = endpoint("a"), endpoint("b"), endpoint("c", in_flight=50)
    policy = RoundRobin()
    assert [policy.choose([a, b, c], RouteRequest(None)).id for _ in range(6)] == list("abcabc")


def test_least_load_counts_in_flight_plus_the_engines_queue() -> None:
    a, b, c = endpoint("a", in_flight=2), endpoint("b", in_flight=1, waiting=4), endpoint("c", in_flight=3)
    assert LeastLoad().choose([a, b, c], RouteRequest(None)).id == "a"


def test_least_load_spreads_ties() -> None:
    pool = [endpoint("a"), endpoint("b"), endpoint("c")]
    policy = LeastLoad()
    assert {policy.choose(pool, RouteRequest(None)).id for _ in range(3)} == {"a", "b", "c"}


def test_cache_aware_keeps_a_prefix_on_one_replica_and_spreads_new_ones() -> None:
    pool = [endpoint("a"), endpoint("b"), endpoint("c")]
    policy = CacheAware()
    groups = {g: [send(policy, pool, chat(f"{g} {LONG}", f"question {i}")) for i in range(5)] for g in "xyz"}
    for chosen in groups.values():
        assert len(set(chosen)) == 1
    assert {chosen[0] for chosen in groups.values()} == {"a", "b", "c"}


def test_cache_aware_balances_when_load_is_out_of_balance() -> None:
    a, b = endpoint("a"), endpoint("b")
    policy = CacheAware(balance_abs=8, balance_rel=1.5)
    assert send(policy, [a, b], chat(LONG, "q0")) == "a"
    a.in_flight = 20  # far more than b: the prefix no longer wins
    assert policy.choose([a, b], chat(LONG, "q1")).id == "b"
    a.in_flight = 5  # within the absolute threshold: the prefix wins again
    assert policy.choose([a, b], chat(LONG, "q2")).id == "a"


def test_cache_aware_below_the_threshold_picks_the_emptiest_index() -> None:
    index = PrefixIndex()
    a, b = endpoint("a"), endpoint("b")
    policy = CacheAware(index, cache_threshold=0.5)
    send(policy, [a], chat(LONG, "x"))
    short_overlap = chat(LONG[:1000], "a different and much longer question " * 100)
    assert policy.choose([a, b], short_overlap).id == "b"


def stream(policy: TtftCost, endpoint: Endpoint, request: RouteRequest, clock: FakeClock, ttft: float) -> Attempt:
    """One stream through `endpoint`: dispatched now, first token after `ttft`, finished a second later."""
    attempt = Attempt(endpoint, request, clock.now)
    policy.dispatched(attempt)
    clock.advance(ttft)
    attempt.first_token_at = clock.now
    policy.first_token(attempt)
    clock.advance(1.0)
    policy.finished(attempt, ok=True)
    return attempt


def test_ttft_cost_prefers_the_cached_replica_until_its_queue_outweighs_the_cache() -> None:
    clock = FakeClock()
    a, b = endpoint("a"), endpoint("b")
    policy = TtftCost(clock=clock, prefill_rate=1000.0, spill_weight=1.0)
    assert policy.choose([a, b], chat(LONG, "first")).id == "a"
    stream(policy, a, chat(LONG, "first"), clock, ttft=1.8)
    assert policy.choose([a, b], chat(LONG, "second")).id == "a"  # ~1,800 tokens cached there
    for i in range(3):  # three cold prompts queue on a, no first token yet
        policy.dispatched(Attempt(a, chat(f"other {i} {LONG}", "q"), clock.now))
    assert policy.choose([a, b], chat(LONG, "third")).id == "b"


def test_ttft_cost_spreads_cold_prompts_over_idle_replicas() -> None:
    clock = FakeClock()
    pool = [endpoint("a"), endpoint("b"), endpoint("c")]
    policy = TtftCost(clock=clock)
    chosen = []
    for g in "xyz":
        request = chat(f"{g} {LONG}", "q")
        target = policy.choose(pool, request)
        stream(policy, target, request, clock, ttft=0.2)
        chosen.append(target.id)
    assert sorted(chosen) == ["a", "b", "c"]


def test_ttft_cost_does_not_pile_cold_prompts_onto_a_replica_that_rejoined_with_an_empty_index() -> None:
    clock = FakeClock()
    pool = [endpoint("a"), endpoint("b"), endpoint("c")]
    policy = TtftCost(clock=clock)

    def send(n: int) -> str:
        request = chat(f"{n} {LONG}", "q")
        target = policy.choose(pool, request)
        stream(policy, target, request, clock, ttft=0.2)
        return target.id

    for n in range(90):
        send(n)
    policy.forget("c")  # as when its breaker opened and it came back
    after = Counter(send(n) for n in range(90, 120))
    assert sorted(after) == ["a", "b", "c"] and min(after.values()) >= 6, after


def test_ttft_cost_adds_the_wait_for_a_batch_slot_once_an_engine_is_seen_full() -> None:
    clock = FakeClock()
    policy = TtftCost(clock=clock, prefill_rate=1000.0)
    full, idle = endpoint("full", in_flight=40), endpoint("idle")
    stream(policy, full, chat("short", "q"), clock, ttft=0.01)  # decode time: 1 s
    assert policy.estimate(full, 10, []) < 1.0  # never seen full: no slot wait assumed
    full.vitals.load = EngineLoad(waiting=8, running=32)
    wait = policy.estimate(full, 10, []) - policy.estimate(idle, 10, [])
    assert wait == pytest.approx(9 * 1.0 / 32, rel=0.05)  # 9 ahead of a batch of 32 that turns over in 1 s
    assert policy.choose([full, idle], chat("short", "q")).id == "idle"


def test_ttft_cost_learns_the_prefill_rate_from_streams_with_a_free_slot() -> None:
    clock = FakeClock()
    slow, fast = endpoint("slow"), endpoint("fast")
    policy = TtftCost(clock=clock, prefill_rate=1000.0)
    for i in range(5):  # cold prompts: all their tokens are prefilled
        stream(policy, slow, chat(f"{i} {LONG}", "q"), clock, ttft=4.0)
        stream(policy, fast, chat(f"{i} {LONG}", "q"), clock, ttft=0.5)
    assert policy.rate("fast") > 2 * policy.rate("slow")  # 8x measured, fading for the seconds since
    cold = chat("cold " + LONG, "q")
    assert policy.choose([slow, fast], cold).id == "fast"
    policy.forget("slow")
    assert policy.rate("slow") == pytest.approx(policy.rate("fast"))  # a new replica starts from the pool


def test_ttft_cost_releases_the_queued_prefill_of_a_failed_attempt() -> None:
    clock = FakeClock()
    a = endpoint("a")
    policy = TtftCost(clock=clock, prefill_rate=1000.0)
    attempt = Attempt(a, chat(LONG, "q"), clock.now)
    policy.dispatched(attempt)
    before = policy.estimate(a, 10, [])
    policy.finished(attempt, ok=False)
    assert policy.estimate(a, 10, []) < before / 10


def test_every_policy_in_the_schema_is_registered() -> None:
    from typing import get_args

    from servestack.stack.schema import PolicyName

    for name in get_args(PolicyName):
        assert make_policy(name).name == name


def test_ttft_cost_takes_a_replicas_first_sample_whole() -> None:
    clock = FakeClock()
    b = endpoint("b")
    policy = TtftCost(clock=clock)  # believes 8,000 tokens/s before any sample
    request = chat(LONG, "q")
    stream(policy, b, request, clock, ttft=request.tokens / 50_000)
    assert policy.rate("b") == pytest.approx(50_000, rel=0.05)  # not capped at 4 x 8,000
    assert policy.rate("a") == pytest.approx(policy.rate("b"))  # unmeasured: like its measured peer


def test_ttft_cost_sends_requests_again_to_a_replica_once_its_slow_sample_has_aged() -> None:
    clock = FakeClock()
    pool = [endpoint("a"), endpoint("b"), endpoint("c")]
    policy = TtftCost(clock=clock)
    for i, replica in enumerate(pool):  # one sample each; a's taken while it was stalled
        stream(policy, replica, chat(f"{i} {LONG}", "q"), clock, ttft=4.0 if replica.id == "a" else 0.1)
    chosen = []
    for i in range(30):  # ~1.1 s apart, all replicas now equally fast
        request = chat(f"cold {i} {LONG}", "q")
        target = policy.choose(pool, request)
        stream(policy, target, request, clock, ttft=0.1)
        chosen.append(target.id)
    assert "a" in chosen[:20]  # back within ~20 s
    assert chosen[-9:].count("a") >= 2  # and in rotation, not once


def test_ttft_cost_ignores_a_sample_from_a_stream_during_which_the_replica_stalled() -> None:
    clock = FakeClock()
    table = EndpointTable(Routing(policy="ttft_cost"), clock=clock)
    for name in "ab":
        table.upsert(Endpoint(f"{name}.0", name, ("m",), f"http://{name}", ready=True))
    pool = table.pool("m")
    policy = pool.policy
    assert isinstance(policy, TtftCost)
    attempt = pool.choose(chat(LONG, "q"))
    before = policy.rate(attempt.endpoint.id)
    attempt.endpoint.vitals.breaker.trip()  # the monitor found it wedged
    clock.advance(10.0)
    pool.first_token(attempt, clock.now)  # it answered once it was let go
    assert policy.rate(attempt.endpoint.id) == before
