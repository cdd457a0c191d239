"""Limits under concurrency: requests/min, tokens/min and concurrent per key (429 + Retry-After),
a bounded per-model queue (503 + Retry-After), the body cap, and the read and upstream deadlines."""

from __future__ import annotations

import asyncio
import socket
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.gateway.prod_engine import ProdEngine
from tests.gateway.prod_harness import ledger_rows, production_gateway

pytestmark = pytest.mark.anyio

CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}
AUTH_ON = {"auth": {"enabled": True}}


async def burst(client: httpx.AsyncClient, n: int, body: dict[str, object] = CHAT) -> list[httpx.Response]:
    return await asyncio.gather(*(client.post("/v1/chat/completions", json=body) for _ in range(n)))


async def test_200_concurrent_requests_on_a_50_per_minute_key(tmp_path: Path) -> None:
    async with production_gateway(tmp_path / "home", AUTH_ON) as gw:
        secret = await gw.create_key("limited", rpm=50)
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
        async with gw.client(secret, limits=limits) as client:
            responses = await burst(client, 200)
    statuses = Counter(r.status_code for r in responses)
    assert 49 <= statuses[200] <= 51 and statuses[200] + statuses[429] == 200, statuses
    for refused in (r for r in responses if r.status_code == 429):
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert len(gw.engine.received) == statuses[200]


async def test_concurrent_and_token_limits(tmp_path: Path) -> None:
    async with production_gateway(tmp_path / "home", AUTH_ON, engine=ProdEngine(delay=0.3)) as gw:
        two_at_once = await gw.create_key("two", max_concurrent=2)
        tokens = await gw.create_key("tokens", tpm=15)  # each answer costs 7 + 3 = 10 tokens
        async with gw.client(two_at_once) as client:
            statuses = Counter(r.status_code for r in await burst(client, 6))
            assert statuses == {200: 2, 429: 4}
            assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200  # slots freed
        async with gw.client(tokens) as client:
            assert [(await client.post("/v1/chat/completions", json=CHAT)).status_code for _ in range(3)] == [
                200,
                200,
                429,
            ]


async def test_per_model_queue_is_bounded(tmp_path: Path) -> None:
    queue = {"limits": {"queue": {"max_concurrent": 1, "max_waiting": 2, "timeout": 5}}}
    async with production_gateway(tmp_path / "home", queue, engine=ProdEngine(delay=0.2)) as gw, gw.client() as client:
        started = time.monotonic()
        responses = await burst(client, 5)
        elapsed = time.monotonic() - started
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: 3, 503: 2}
    assert elapsed >= 0.55  # the three admitted ones ran one after another
    for full in (r for r in responses if r.status_code == 503):
        assert int(full.headers["retry-after"]) >= 1 and "queue" in full.json()["error"]["message"]


async def test_queue_wait_times_out(tmp_path: Path) -> None:
    queue = {"limits": {"queue": {"max_concurrent": 1, "max_waiting": 5, "timeout": 0.2}}}
    async with production_gateway(tmp_path / "home", queue, engine=ProdEngine(delay=0.5)) as gw, gw.client() as client:
        statuses = Counter(r.status_code for r in await burst(client, 3))
    assert statuses == {200: 1, 503: 2}


async def test_body_cap_and_upstream_idle_timeout(tmp_path: Path) -> None:
    config = {"limits": {"max_body_bytes": "1KiB"}, "timeouts": {"idle": 0.3}}
    async with production_gateway(tmp_path / "home", config, engine=ProdEngine(stall=1.0)) as gw, gw.client() as client:
        big = {**CHAT, "messages": [{"role": "user", "content": "x" * 2000}]}
        too_big = await client.post("/v1/chat/completions", json=big)
        stalled = await client.post("/v1/chat/completions", json=CHAT)
    assert too_big.status_code == 413 and too_big.json()["error"]["code"] == "request_too_large"
    assert stalled.status_code == 504 and stalled.json()["error"]["code"] == "upstream_timeout"


async def test_slow_clients_are_disconnected(tmp_path: Path) -> None:
    config = {"timeouts": {"headers": 0.3, "body": 0.3}}
    async with production_gateway(tmp_path / "home", config) as gw:
        host, port = gw.url.removeprefix("http://").split(":")

        def closed_after(data: bytes) -> float:
            with socket.create_connection((host, int(port)), timeout=5) as sock:
                sock.sendall(data)
                started = time.monotonic()
                assert sock.recv(1024) == b""  # closed without an answer
                return time.monotonic() - started

        for partial in (
            b"",
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n",
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{",
        ):
            assert 0.2 < await asyncio.to_thread(closed_after, partial) < 2.0
        async with gw.client() as client:  # a normal client is unaffected, also on a kept-alive connection
            assert [(await client.post("/v1/chat/completions", json=CHAT)).status_code for _ in range(2)] == [200, 200]


async def test_a_client_that_gives_up_on_a_whole_answer_frees_everything_its_request_held(tmp_path: Path) -> None:
    home = tmp_path / "home"
    config = {**AUTH_ON, "limits": {"queue": {"max_concurrent": 1, "max_waiting": 0, "timeout": 5}}}
    engine = ProdEngine()
    async with production_gateway(home, config, engine=engine) as gw:
        secret = await gw.create_key("one", max_concurrent=1)
        key = {"Authorization": f"Bearer {secret}"}
        async with httpx.AsyncClient(base_url=gw.url, headers=key, timeout=0.5) as impatient:
            with pytest.raises(httpx.ReadTimeout):  # "slow" holds the engine 30 s; the client leaves after 0.5
                await impatient.post("/v1/chat/completions", json={**CHAT, "user": "slow"})
        endpoint = gw.table.get("tiny.0")
        assert endpoint is not None
        deadline = time.monotonic() + 2
        while endpoint.in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        async with gw.client(secret) as client:
            metrics = (await client.get("/metrics")).text
            again = await client.post("/v1/chat/completions", json=CHAT)  # the key's slot and the queue's are free
    assert endpoint.in_flight == 0
    assert 'servestack_requests_in_flight{model="tiny"} 0.0' in metrics
    assert again.status_code == 200, again.text
    rows = ledger_rows(home)
    assert [row["status"] for row in rows] == [499, 200]


async def test_a_client_that_leaves_cancels_its_own_request_and_no_other(tmp_path: Path) -> None:
    async with production_gateway(tmp_path / "home", engine=ProdEngine(delay=1.0)) as gw, gw.client() as patient:
        async with httpx.AsyncClient(base_url=gw.url, timeout=0.3) as impatient:
            staying = asyncio.create_task(patient.post("/v1/chat/completions", json=CHAT))
            with pytest.raises(httpx.ReadTimeout):
                await impatient.post("/v1/chat/completions", json=CHAT)
        answer = await staying
    assert answer.status_code == 200 and answer.json()["choices"]
