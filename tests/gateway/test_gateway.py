"""The gateway against a fake engine: routing by model, byte-for-byte relay, OpenAI-style errors."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from servestack.gateway import Endpoint
from tests.conftest import free_port
from tests.gateway.conftest import Harness
from tests.gateway.fake_engine import CHAT_BODY, FLOOD_EVENT, FLOOD_EVENTS, STREAM_CHUNKS

pytestmark = pytest.mark.anyio

CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "capital of France?"}]}


def assert_openai_error(response: httpx.Response, status: int, code: str, param: str | None = None) -> None:
    assert response.status_code == status
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code
    assert error["param"] == param
    assert error["message"]


async def test_lists_every_served_name(gateway: Harness) -> None:
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        response = await client.get("/v1/models")
    assert response.status_code == 200
    assert [m["id"] for m in response.json()["data"]] == ["tiny", "tiny-alias"]


async def test_answer_is_relayed_byte_for_byte_and_request_untouched(gateway: Harness) -> None:
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        response = await client.post("/v1/chat/completions", json={**CHAT, "model": "tiny-alias"})
    assert response.status_code == 200
    assert response.content == CHAT_BODY
    assert gateway.engine.received == [{**CHAT, "model": "tiny-alias"}]


async def test_stream_is_relayed_byte_for_byte(gateway: Harness) -> None:
    async with (
        httpx.AsyncClient(base_url=gateway.url) as client,
        client.stream("POST", "/v1/chat/completions", json={**CHAT, "stream": True}) as response,
    ):
        assert response.headers["content-type"].startswith("text/event-stream")
        body = b"".join([chunk async for chunk in response.aiter_raw()])
    assert body == b"".join(STREAM_CHUNKS)


async def test_trace_headers_are_forwarded_but_not_the_clients_key(gateway: Harness) -> None:
    headers = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "authorization": "Bearer sk-x"}
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        await client.post("/v1/completions", json={"model": "tiny", "prompt": "hi"}, headers=headers)
    seen = {k.lower(): v for k, v in gateway.engine.headers[0].items()}
    assert seen["traceparent"] == headers["traceparent"]
    assert "authorization" not in seen


async def test_unknown_model_is_404(gateway: Harness) -> None:
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        response = await client.post("/v1/chat/completions", json={**CHAT, "model": "gpt-5"})
    assert_openai_error(response, 404, "model_not_found", "model")
    assert "gpt-5" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/chat/completions", b"{not json", None),
        ("/v1/chat/completions", b"[1, 2]", None),
        ("/v1/chat/completions", b'{"messages": []}', "model"),
        ("/v1/chat/completions", b'{"model": "tiny"}', "messages"),
        ("/v1/completions", b'{"model": "tiny"}', "prompt"),
        ("/v1/chat/completions", b'{"model": "tiny", "messages": [], "stream": "yes"}', "stream"),
    ],
)
async def test_malformed_requests_are_400(gateway: Harness, path: str, body: bytes, param: str | None) -> None:
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        response = await client.post(path, content=body, headers={"content-type": "application/json"})
    assert_openai_error(response, 400, "invalid_request", param)
    assert gateway.engine.received == []


async def test_engine_not_ready_is_503_with_retry_after(gateway: Harness) -> None:
    gateway.table.upsert(Endpoint(id="big.0", service="big", models=("big",), base_url="http://127.0.0.1:1"))
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        response = await client.post("/v1/chat/completions", json={**CHAT, "model": "big"})
    assert_openai_error(response, 503, "engine_unavailable", None)
    assert response.headers["retry-after"] == "5"


async def test_engine_down_is_503(gateway: Harness) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    gateway.table.upsert(Endpoint(id="gone.0", service="gone", models=("gone",), base_url=dead, ready=True))
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        response = await client.post("/v1/chat/completions", json={**CHAT, "model": "gone"})
    assert_openai_error(response, 503, "engine_unavailable", None)
    assert "not reachable" in response.json()["error"]["message"]


async def test_client_disconnect_cancels_the_upstream_stream(gateway: Harness) -> None:
    gateway.engine.mode = "slow"
    async with (
        httpx.AsyncClient(base_url=gateway.url) as client,
        client.stream("POST", "/v1/chat/completions", json={**CHAT, "stream": True}) as response,
    ):
        async for _ in response.aiter_raw():
            break  # one chunk, then hang up
    await asyncio.wait_for(gateway.engine.stream_cancelled.wait(), timeout=5)


async def test_a_client_that_reads_nothing_holds_the_engines_stream_back(gateway: Harness) -> None:
    gateway.engine.mode = "flood"  # 128 MiB as fast as the gateway takes them
    host, port = gateway.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    body = json.dumps({**CHAT, "stream": True}).encode()
    head = f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(body)}\r\n\r\n"
    writer.write(head.encode() + body)
    await reader.readuntil(b"\r\n\r\n")
    await asyncio.sleep(1.0)  # the client reads nothing for a second
    held_back_at = gateway.engine.flooded
    received = bytearray()
    while not received.endswith(b"0\r\n\r\n"):
        received += await asyncio.wait_for(reader.read(1 << 20), timeout=30)
    writer.close()
    assert held_back_at < 32 * 2**20  # what the sockets' buffers hold, not the whole stream
    assert received.count(b"x") == FLOOD_EVENTS * FLOOD_EVENT.count(b"x")  # then all of it


async def test_engine_dying_mid_stream_ends_with_an_error_event(gateway: Harness) -> None:
    gateway.engine.mode = "die"
    async with (
        httpx.AsyncClient(base_url=gateway.url) as client,
        client.stream("POST", "/v1/chat/completions", json={**CHAT, "stream": True}) as response,
    ):
        body = b"".join([chunk async for chunk in response.aiter_raw()])
    events = [e for e in body.split(b"\n\n") if e]
    assert events[0] + b"\n\n" == STREAM_CHUNKS[0]
    assert b'"type":"upstream_error"' in events[-1]


async def test_unknown_route_and_wrong_method(gateway: Harness) -> None:
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        missing = await client.get("/v1/nothing")
        wrong = await client.get("/v1/chat/completions")
    assert_openai_error(missing, 404, "not_found")
    assert_openai_error(wrong, 405, "method_not_allowed")


async def test_health_reports_services(gateway: Harness) -> None:
    gateway.table.upsert(Endpoint(id="big.0", service="big", models=("big",), base_url="http://127.0.0.1:1"))
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        response = await client.get("/health")
    assert response.status_code == 200  # the gateway still serves `tiny`
    assert response.json() == {"status": "degraded", "services": {"tiny": "ready", "big": "starting"}}
