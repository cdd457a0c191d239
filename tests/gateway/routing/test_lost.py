"""A replica whose engine went away without closing its connections (its cluster node died: they stay
open and silent). Once the controller reports it gone, the requests still on it end at once: those that
had nothing from it yet go to another replica, a stream that had begun ends with an SSE error event.
Before, they waited for the health probe to find the replica stalled (whole answers) or for the idle
timeout, 600 s (streams)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from servestack.gateway import Endpoint
from servestack.gateway.fleet.endpoint import EndpointState
from servestack.gateway.relay.retry import RetryBudget
from servestack.sim import SimConfig
from tests.gateway.routing.cluster import MODEL, Cluster, start_cluster

pytestmark = pytest.mark.anyio

QUICK = SimConfig(prefill_rate=8000, decode_rate=200, time_scale=0.05)
HI = [{"role": "user", "content": "hello"}]
LOST = "lost: node w1 (2f3a9c1e) died — placing it again"
SOON = 1.0  # seconds; the health probe would find the replica stalled after 2 s, the idle timeout after 600 s
CHUNK = b'data: {"id":"c1","object":"chat.completion.chunk","created":0,"model":"sim","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}\n\n'  # noqa: E501
STREAM_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"


@asynccontextmanager
async def silent(begin_stream: bool) -> AsyncIterator[str]:
    """An engine on a dead node: it takes each request and answers nothing more (`begin_stream`: after the
    head and first chunk of a stream). Its connections stay open."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        if begin_stream:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(STREAM_HEAD + b"%x\r\n%s\r\n" % (len(CHUNK), CHUNK))

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        for writer in held:
            writer.close()
        server.close()


def on_node(url: str, state: EndpointState, last_error: str | None = None) -> Endpoint:
    return Endpoint(
        "sim.9", "sim", (MODEL,), url, state=state, engine="sim", health_url=url + "/health", node="w1",
        last_error=last_error,
    )  # fmt: skip


async def lose(cluster: Cluster, url: str, waiting: int = 1) -> None:
    """Once `waiting` requests are on it, what the controller reports when the replica's node died: the
    replica is restarting elsewhere."""
    silent_one = cluster.endpoint(9)
    while silent_one.in_flight < waiting:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)
    cluster.table.upsert(on_node(url, EndpointState.RESTARTING, LOST))


async def test_whole_answers_waiting_on_a_lost_replica_go_to_another_at_once() -> None:
    async with silent(begin_stream=False) as url, start_cluster([QUICK], policy="round_robin") as cluster:
        cluster.table.upsert(on_node(url, EndpointState.READY))
        answers = asyncio.gather(*(cluster.chat(HI) for _ in range(4)))  # two of them go to the silent replica
        await lose(cluster, url)
        answered = await asyncio.wait_for(answers, SOON)
    assert answered == [(200, "r0")] * 4
    assert cluster.endpoint(9).in_flight == 0


async def test_a_lost_replicas_requests_are_retried_whatever_the_retry_budget_says() -> None:
    """The budget keeps retries from piling onto replicas that fail under load; a lost replica's requests
    add no work anywhere (it does none for them), so their retries do not draw on it."""
    async with silent(begin_stream=False) as url, start_cluster([QUICK], policy="round_robin") as cluster:
        cluster.gateway.dispatcher.budget = RetryBudget(0.2, burst=1.0)  # one retry now, one more a second
        cluster.table.upsert(on_node(url, EndpointState.READY))
        answers = asyncio.gather(*(cluster.chat(HI) for _ in range(6)))
        await lose(cluster, url, waiting=3)
        answered = await asyncio.wait_for(answers, SOON)
    assert answered == [(200, "r0")] * 6


async def test_a_stream_begun_on_a_lost_replica_ends_with_an_error_event_at_once() -> None:
    async with silent(begin_stream=True) as url, start_cluster([], policy="round_robin") as cluster:
        cluster.table.upsert(on_node(url, EndpointState.READY))
        stream = asyncio.ensure_future(cluster.stream(HI))
        await lose(cluster, url)
        events, _ = await asyncio.wait_for(stream, SOON)
    assert events[0]["choices"][0]["delta"] == {"content": "Hi"}  # it had begun
    error = events[-1]["error"]
    assert error["code"] == "bad_gateway" and "went away during the request" in error["message"], error
    assert LOST in error["message"]
