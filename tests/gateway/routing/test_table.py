"""The endpoint table: pools by served name, what survives an upsert, what a restart forgets."""

from __future__ import annotations

import pytest

from servestack.errors import ModelNotFound, UpstreamUnavailable
from servestack.gateway import Endpoint, EndpointState, EndpointTable
from servestack.gateway.fleet.breaker import BreakerState
from servestack.gateway.fleet.routing import CacheAware, RouteRequest
from servestack.stack import Routing

PROMPT = RouteRequest({"prompt": "a long shared prefix " * 50})


def replica(service: str, i: int, models: tuple[str, ...], state: EndpointState = EndpointState.READY) -> Endpoint:
    return Endpoint(f"{service}.{i}", service, models, f"http://127.0.0.1:{9000 + i}", state=state)


def test_replicas_and_services_sharing_a_name_form_one_pool() -> None:
    table = EndpointTable()
    table.upsert(replica("a", 0, ("chat", "a")))
    table.upsert(replica("a", 1, ("chat", "a")))
    table.upsert(replica("b", 2, ("chat",)))
    assert [e.id for e in table.pool("chat").endpoints] == ["a.0", "a.1", "b.2"]
    assert [e.id for e in table.pool("a").endpoints] == ["a.0", "a.1"]
    assert sorted(table.models()) == ["a", "chat"]
    table.remove("b.2")
    assert [e.id for e in table.pool("chat").endpoints] == ["a.0", "a.1"]
    with pytest.raises(ModelNotFound):
        table.pool("nope")


def test_each_model_gets_the_policy_the_stack_names() -> None:
    table = EndpointTable(Routing(policy="least_load", models={"chat": "cache_aware"}))
    table.upsert(replica("a", 0, ("chat", "other")))
    assert table.pool("chat").policy.name == "cache_aware"
    assert table.pool("other").policy.name == "least_load"


def test_only_ready_endpoints_with_a_closed_circuit_are_candidates() -> None:
    table = EndpointTable(Routing(failure_threshold=1))
    table.upsert(replica("a", 0, ("m",), EndpointState.STARTING))
    with pytest.raises(UpstreamUnavailable, match="is loading"):
        table.pool("m").pick()
    table.upsert(replica("a", 0, ("m",)))
    table.upsert(replica("a", 1, ("m",), EndpointState.DRAINING))
    assert table.pool("m").pick().id == "a.0"
    table.get("a.0").vitals.breaker.failed()  # type: ignore[union-attr]
    with pytest.raises(UpstreamUnavailable, match="failing"):
        table.pool("m").pick()


def test_an_update_keeps_what_the_gateway_observed() -> None:
    table = EndpointTable(Routing(failure_threshold=1))
    table.upsert(replica("a", 0, ("m",)))
    table.upsert(replica("a", 1, ("m",)))
    first = table.pool("m").pick()
    first.in_flight += 1
    pool = table.pool("m")
    attempt = pool.choose(PROMPT)
    table.upsert(replica("a", int(first.id[-1]), ("m",)))  # e.g. the controller re-reports it
    again = table.get(first.id)
    assert again is not first and again is not None
    assert again.in_flight == 1 and again.vitals is first.vitals
    assert table.pool("m") is pool
    assert attempt.endpoint.id in [e.id for e in pool.endpoints]


def test_a_restarted_engine_is_forgotten_by_the_breaker_and_the_policy() -> None:
    table = EndpointTable(Routing(policy="cache_aware", failure_threshold=1))
    table.upsert(replica("a", 0, ("m",)))
    table.upsert(replica("a", 1, ("m",)))
    attempt = table.pool("m").choose(PROMPT)
    assert attempt.endpoint.id == "a.0"
    policy = table.pool("m").policy
    assert isinstance(policy, CacheAware)
    assert policy.index.size("a.0") > 0
    table.pool("m").finish(attempt, ok=False)
    assert table.get("a.0").vitals.breaker.state is BreakerState.OPEN  # type: ignore[union-attr]
    table.upsert(replica("a", 0, ("m",), EndpointState.RESTARTING))
    table.upsert(replica("a", 0, ("m",)))
    endpoint = table.get("a.0")
    assert endpoint is not None and endpoint.vitals.breaker.state is BreakerState.CLOSED
    assert policy.index.size("a.0") == 0


def test_a_pool_of_one_skips_the_policys_bookkeeping() -> None:
    table = EndpointTable(Routing(policy="cache_aware"))
    table.upsert(replica("a", 0, ("m",)))
    table.pool("m").choose(PROMPT)
    policy = table.pool("m").policy
    assert isinstance(policy, CacheAware) and policy.index.size("a.0") == 0


def test_ready_is_still_accepted_as_a_shorthand() -> None:
    assert Endpoint("x", "s", ("m",), "http://x", ready=True).state is EndpointState.READY
    assert Endpoint("x", "s", ("m",), "http://x").state is EndpointState.STARTING
