"""Truthful states: a model that is loading, restarting, stopped or failed says which (and the fix), and
/health reports each service and whether the gateway can serve anything."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from servestack.controller.controller import ENDPOINT_STATES
from servestack.gateway import Endpoint, EndpointState, EndpointTable, Gateway, GatewayServer
from servestack.gateway.edge.app import HEALTH_ORDER
from servestack.stack import Routing
from servestack.supervisor import ReplicaStatus

pytestmark = pytest.mark.anyio

CHAT = {"messages": [{"role": "user", "content": "hi"}]}


def replica(service: str, state: EndpointState, last_error: str | None = None, i: int = 0) -> Endpoint:
    return Endpoint(
        f"{service}.{i}", service, (service,), f"http://127.0.0.1:{9 + i}", state=state, last_error=last_error
    )


@pytest.fixture
async def served() -> AsyncIterator[tuple[EndpointTable, httpx.AsyncClient]]:
    table = EndpointTable(Routing(failure_threshold=1))
    server = GatewayServer(Gateway(table), "127.0.0.1", 0)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url) as client:
            yield table, client
    finally:
        await server.stop()


async def test_a_model_that_is_down_says_why_and_what_fixes_it(served: tuple[EndpointTable, httpx.AsyncClient]) -> None:
    table, client = served
    table.upsert(replica("loading", EndpointState.STARTING))
    table.upsert(replica("crashed", EndpointState.RESTARTING, "engine exited with code 1"))
    table.upsert(replica("off", EndpointState.STOPPED))
    table.upsert(replica("broken", EndpointState.FAILED, "engine exited with code 1: CUDA out of memory"))
    table.upsert(replica("broken", EndpointState.STOPPED, i=1))
    answers = {m: await client.post("/v1/chat/completions", json={**CHAT, "model": m}) for m in table.models()}
    ollama = await client.post("/api/chat", json={**CHAT, "model": "off"})

    for model in ("loading", "crashed"):
        assert answers[model].status_code == 503 and answers[model].headers["retry-after"] == "5"
        assert answers[model].json()["error"]["code"] == "engine_unavailable"
    off = answers["off"].json()["error"]
    assert answers["off"].status_code == 503 and "retry-after" not in answers["off"].headers
    assert (
        off["code"] == "model_stopped"
        and off["message"] == "The model 'off' is stopped; `servestack start off` starts it"
    )
    broken = answers["broken"].json()["error"]
    assert answers["broken"].status_code == 503 and "retry-after" not in answers["broken"].headers
    assert broken["code"] == "model_failed"
    assert "failed (last error: engine exited with code 1: CUDA out of memory)" in broken["message"]
    assert "`servestack start broken`" in broken["message"]
    assert ollama.status_code == 503 and "servestack start off" in ollama.json()["error"]


async def test_health_reports_each_service_and_degraded_or_unavailable(
    served: tuple[EndpointTable, httpx.AsyncClient],
) -> None:
    table, client = served
    empty = await client.get("/health")
    table.upsert(replica("chat", EndpointState.READY))
    table.upsert(replica("chat", EndpointState.STOPPED, i=1))
    ok = await client.get("/health")
    table.upsert(replica("embed", EndpointState.FAILED, "boom"))
    degraded = await client.get("/health")
    table.upsert(replica("chat", EndpointState.STOPPED))
    down = await client.get("/health")
    table.upsert(replica("chat", EndpointState.READY))
    chat = table.get("chat.0")
    assert chat is not None
    chat.vitals.breaker.trip()
    failing = await client.get("/health")

    assert empty.status_code == 503 and empty.json() == {"status": "unavailable", "services": {}}
    assert ok.status_code == 200 and ok.json() == {"status": "ok", "services": {"chat": "ready"}}
    assert degraded.status_code == 200
    assert degraded.json() == {"status": "degraded", "services": {"chat": "ready", "embed": "failed"}}
    assert down.status_code == 503
    assert down.json() == {"status": "unavailable", "services": {"chat": "stopped", "embed": "failed"}}
    assert failing.status_code == 503 and failing.json()["services"]["chat"] == "failing"


def test_every_replica_status_and_endpoint_state_has_a_reading() -> None:
    assert set(ENDPOINT_STATES) == set(ReplicaStatus)
    assert {s.value for s in EndpointState} <= set(HEALTH_ORDER)
