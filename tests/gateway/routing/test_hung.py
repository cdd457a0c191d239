"""A replica that stops answering altogether (SIGSTOP, a wedged process: connections are accepted, nothing
is read or answered), under the default settings: requests move to a replica that answers, new ones
stop going there, and a client that gives up frees what its request held."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

from servestack.gateway import Endpoint
from servestack.gateway.fleet.breaker import BreakerState
from servestack.sim import SimConfig
from tests.gateway.routing.cluster import MODEL, start_cluster

pytestmark = pytest.mark.anyio

QUICK = SimConfig(prefill_rate=8000, decode_rate=200, time_scale=0.05)
HI = [{"role": "user", "content": "hello"}]
CLIENT_TIMEOUT = 20.0  # far below the engine idle timeout (600 s), which bounded the wait before


@asynccontextmanager
async def black_hole() -> AsyncIterator[str]:
    """A server that accepts connections and never reads or answers (what a stopped process looks like)."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        for writer in held:
            writer.close()
        server.close()


def hung_endpoint(url: str) -> Endpoint:
    return Endpoint("sim.9", "sim", (MODEL,), url, ready=True, engine="sim", health_url=url + "/health")


async def test_requests_to_a_hung_replica_move_to_one_that_answers_with_default_settings() -> None:
    async with black_hole() as url, start_cluster([QUICK], policy="round_robin") as cluster:
        cluster.table.upsert(hung_endpoint(url))
        hung = cluster.table.get("sim.9")
        assert hung is not None
        began = time.monotonic()
        answers = await asyncio.wait_for(asyncio.gather(*(cluster.chat(HI) for _ in range(6))), CLIENT_TIMEOUT)
        streams = await asyncio.wait_for(asyncio.gather(*(cluster.stream(HI) for _ in range(2))), CLIENT_TIMEOUT)
        seconds = time.monotonic() - began
        assert [status for status, _ in answers] == [200] * 6 and {r for _, r in answers} == {"r0"}
        assert {replica for _, replica in streams} == {"r0"}
        assert hung.vitals.breaker.state is BreakerState.OPEN  # it stalled: no new requests for now
        assert hung.in_flight == 0
        began_after = time.monotonic()
        assert [(await cluster.chat(HI))[0] for _ in range(4)] == [200] * 4
        assert time.monotonic() - began_after < 2.0  # none of them waited for the hung replica
        print(f"\n8 requests, some first sent to a hung replica, all answered in {seconds:.1f}s")


async def test_a_lone_hung_replica_refuses_new_requests_and_a_client_that_leaves_frees_its_request() -> None:
    async with black_hole() as url, start_cluster([], policy="round_robin") as cluster:
        cluster.table.upsert(hung_endpoint(url))
        hung = cluster.table.get("sim.9")
        assert hung is not None
        first = asyncio.create_task(cluster.chat(HI))  # nowhere else to go: it waits for its deadline
        while hung.vitals.breaker.state is not BreakerState.OPEN:
            await asyncio.sleep(0.05)
        began = time.monotonic()
        refused = await cluster.client.post("/v1/chat/completions", json={"model": MODEL, "messages": HI})
        assert time.monotonic() - began < 1.0
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "engine_unavailable"
        assert hung.in_flight == 1 and not first.done()
        first.cancel()  # the client gives up: its connection closes
        await asyncio.gather(first, return_exceptions=True)
        for _ in range(100):
            if hung.in_flight == 0:
                break
            await asyncio.sleep(0.01)
        assert hung.in_flight == 0 and not hung.vitals.waiting


async def test_without_a_first_byte_deadline_only_the_idle_timeout_ends_the_wait() -> None:
    from servestack.gateway import Upstream

    upstream = Upstream(first_byte_timeout=0, idle_timeout=0.5)
    async with black_hole() as url, start_cluster([], policy="round_robin", upstream=upstream) as cluster:
        cluster.table.upsert(hung_endpoint(url))
        response = await asyncio.wait_for(
            cluster.client.post("/v1/chat/completions", json={"model": MODEL, "messages": HI}), CLIENT_TIMEOUT
        )
    assert response.status_code == 504 and "did not answer in time" in response.json()["error"]["message"]


async def test_a_client_gone_from_a_whole_answer_is_cancelled_upstream() -> None:
    async with black_hole() as url, start_cluster([], policy="round_robin") as cluster:
        cluster.table.upsert(hung_endpoint(url))
        hung = cluster.table.get("sim.9")
        assert hung is not None
        async with httpx.AsyncClient(base_url=cluster.url, timeout=0.3) as impatient:
            with pytest.raises(httpx.ReadTimeout):
                await impatient.post("/v1/chat/completions", json={"model": MODEL, "messages": HI})
        for _ in range(100):
            if hung.in_flight == 0:
                break
            await asyncio.sleep(0.01)
        assert hung.in_flight == 0
