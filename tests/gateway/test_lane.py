"""The callback data path (edge/lane.py): what it answers is what the ASGI path answers, and what it
does not answer itself it hands to the app whole."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pytest
from aiohttp import web

from servestack.gateway import Endpoint, EndpointTable, Gateway, GatewayServer
from tests.gateway.prod_engine import ProdEngine
from tests.gateway.prod_harness import ledger_rows, production_gateway

pytestmark = pytest.mark.anyio

CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}
EVERYTHING_ON = {"auth": {"enabled": True}, "metrics": {"enabled": True}, "usage": {"enabled": True}}
ASGI = "/v1/chat/completions?via=asgi"  # a query string: the lane takes exact paths only, the app routes it the same


def comparable(response: httpx.Response) -> tuple[int, bytes, list[tuple[str, str]]]:
    headers = sorted((k, v) for k, v in response.headers.items() if k != "x-request-id")
    return response.status_code, response.content, headers


async def settle() -> None:
    await asyncio.sleep(0.3)  # usage rows are committed every 50 ms


async def test_whole_and_streamed_answers_match_the_asgi_path(tmp_path: Path) -> None:
    home = tmp_path / "home"
    async with production_gateway(home, EVERYTHING_ON) as gw:
        secret = await gw.create_key("alice")
        async with gw.client(secret) as client:
            for body in (CHAT, {**CHAT, "stream": True}):
                on_lane = await client.post("/v1/chat/completions", json=body)
                on_app = await client.post(ASGI, json=body)
                assert on_lane.status_code == 200
                assert comparable(on_lane) == comparable(on_app)
                assert on_lane.headers["x-request-id"] != on_app.headers["x-request-id"]
        assert (gw.gateway.lane.answered, gw.gateway.lane.handed_over) == (2, 0)
        await settle()
        # The engine was asked for the stream's usage chunk both times, and the client got none.
        assert [body.get("stream_options") for body in gw.engine.received[2:]] == [{"include_usage": True}] * 2
        assert b'"usage"' not in on_lane.content
    rows = ledger_rows(home)
    assert [(r["stream"], r["status"], r["prompt_tokens"], r["completion_tokens"], r["key_name"]) for r in rows] == [
        (0, 200, 7, 3, "alice"),
        (0, 200, 7, 3, "alice"),
        (1, 200, 7, 3, "alice"),
        (1, 200, 7, 3, "alice"),
    ]


async def test_refusals_are_handed_to_the_app_whole(tmp_path: Path) -> None:
    async with production_gateway(tmp_path / "home", EVERYTHING_ON) as gw:
        secret = await gw.create_key("alice")
        async with gw.client(secret) as client:
            unknown = await client.post("/v1/chat/completions", json={**CHAT, "model": "nope"})
            broken = await client.post("/v1/chat/completions", content=b"{not json")
        async with gw.client("sk-wrong") as client:
            no_key = await client.post("/v1/chat/completions", json=CHAT)
        assert gw.gateway.lane.answered == 0 and gw.gateway.lane.handed_over == 3
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "model_not_found"
    assert broken.status_code == 400 and "not valid JSON" in broken.json()["error"]["message"]
    assert no_key.status_code == 401
    assert all(r.headers.get("x-request-id") for r in (unknown, broken, no_key))


async def test_a_client_that_leaves_ends_the_engine_call_and_is_counted_as_499(tmp_path: Path) -> None:
    home = tmp_path / "home"
    async with production_gateway(home, EVERYTHING_ON) as gw:
        secret = await gw.create_key("alice")
        endpoint = gw.table.endpoints()[0]
        host, port = gw.url.removeprefix("http://").split(":")
        _, writer = await asyncio.open_connection(host, int(port))
        body = orjson.dumps({**CHAT, "messages": [{"role": "user", "content": "slow"}]})
        writer.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (secret.encode(), len(body), body)
        )
        await writer.drain()
        for _ in range(100):  # the engine has the request
            if gw.engine.received:
                break
            await asyncio.sleep(0.02)
        assert endpoint.in_flight == 1
        writer.close()
        for _ in range(100):
            if endpoint.in_flight == 0:
                break
            await asyncio.sleep(0.02)
        assert endpoint.in_flight == 0 and not endpoint.vitals.calls
        await settle()
    assert [r["status"] for r in ledger_rows(home)] == [499]


async def close_at_done(url: str, path: str, secret: str | None = None) -> None:
    """A stream request whose client closes as soon as it has read `data: [DONE]`, as guidellm does."""
    headers = {"Authorization": f"Bearer {secret}"} if secret else {}
    async with (
        httpx.AsyncClient(base_url=url, headers=headers, timeout=5) as client,
        client.stream("POST", path, json={**CHAT, "stream": True}) as response,
    ):
        async for line in response.aiter_lines():
            if line == "data: [DONE]":
                break  # leaving the block closes the connection: the rest of the answer is not read


async def engine_call_ends(endpoint: Endpoint) -> None:
    for _ in range(50):
        if endpoint.in_flight == 0:
            break
        await asyncio.sleep(0.02)
    assert endpoint.in_flight == 0  # the engine call ended with the client, not 2 s later
    assert endpoint.vitals.breaker.failures == 0


@pytest.mark.parametrize("path", ["/v1/chat/completions", ASGI])
async def test_a_client_that_closes_at_done_got_the_whole_answer_not_a_499(tmp_path: Path, path: str) -> None:
    """guidellm closes a stream as soon as it reads `data: [DONE]`, before the engine's end can reach the gateway."""
    home = tmp_path / "home"
    async with production_gateway(home, EVERYTHING_ON, engine=ProdEngine(end_late=2)) as gw:
        secret = await gw.create_key("alice")
        await close_at_done(gw.url, path, secret)
        await engine_call_ends(gw.table.endpoints()[0])
        await settle()
    rows = ledger_rows(home)
    assert [(r["stream"], r["status"], r["prompt_tokens"], r["completion_tokens"]) for r in rows] == [(1, 200, 7, 3)]


@pytest.mark.parametrize("path", ["/v1/chat/completions", ASGI])
async def test_a_done_split_across_the_engines_writes_is_seen_on_a_stream_relayed_as_it_came(
    tmp_path: Path, path: str
) -> None:
    """With nothing counting tokens a stream goes out as the engine wrote it, not event by event."""
    log = tmp_path / "access.jsonl"
    config = {"logs": {"format": "json", "path": str(log)}, "metrics": {"enabled": False}, "usage": {"enabled": False}}
    engine = ProdEngine(end_late=2, split_done=True)
    async with production_gateway(tmp_path / "home", config, engine=engine, admin_key=None) as gw:
        assert not gw.gateway.counts_tokens  # so the stream is not cut into whole events
        await close_at_done(gw.url, path)
        await engine_call_ends(gw.table.endpoints()[0])
    assert [json.loads(line)["status"] for line in log.read_text().splitlines()] == [200]


@dataclass
class FirstIsSlow(ProdEngine):
    """Answers the request that says "first" 0.3 s late, the others at once."""

    async def _take(self, request: web.Request) -> dict[str, object]:
        body = await super()._take(request)
        if "first" in json.dumps(body):
            await asyncio.sleep(0.3)
        return body


async def test_pipelined_requests_are_answered_in_order(tmp_path: Path) -> None:
    async with production_gateway(tmp_path / "home", engine=FirstIsSlow()) as gw:
        host, port = gw.url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        request = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Request-Id: %s\r\nContent-Length: %d\r\n\r\n%s"
        bodies = {rid: orjson.dumps({**CHAT, "messages": [{"role": "user", "content": rid.decode()}]})
                  for rid in (b"first", b"second", b"third")}  # fmt: skip
        writer.write(b"".join(request % (rid, len(body), body) for rid, body in bodies.items()))
        await writer.drain()
        answers = b""
        while answers.count(b"HTTP/1.1 200") < 3:
            answers += await asyncio.wait_for(reader.read(65536), 10)
        writer.close()
    order = [answers.index(b"x-request-id: %s" % rid) for rid in (b"first", b"second", b"third")]
    assert order == sorted(order)


async def test_requests_the_lane_does_not_take_are_served_by_the_app(tmp_path: Path) -> None:
    async with production_gateway(tmp_path / "home") as gw:
        host, port = gw.url.removeprefix("http://").split(":")
        body = orjson.dumps(CHAT)
        heads = [
            b"POST /v1/chat/completions HTTP/1.0\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body),
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s"
            % (len(body), body),
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body),
        ]
        for head in heads:
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(head)
            answer = await asyncio.wait_for(reader.read(), 10)  # each ends with its connection
            writer.close()
            assert answer.startswith(b"HTTP/1.1 200") and b'"Hello there"' in answer, answer
        assert gw.gateway.lane.answered == 0


async def test_a_whole_answer_larger_than_the_relay_buffer_arrives_whole() -> None:
    """Past HIGH_WATER (256 KiB) buffered, reading from the engine paused, and a whole answer, read only at
    its end, waited forever for an end that could not come (both paths; a client timed out)."""
    content = "a" * 1_000_000
    answer = {"id": "x", "object": "chat.completion", "usage": {"prompt_tokens": 1, "completion_tokens": 2}}
    answer["choices"] = [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}]

    async def chat(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response(answer)

    async with gateway_before(chat) as (_, url), httpx.AsyncClient(base_url=url, timeout=10) as client:
        body = {"model": "big", "messages": [{"role": "user", "content": "hi"}]}
        for path in ("/v1/chat/completions", ASGI):
            response = await client.post(path, json=body)
            assert response.status_code == 200
            assert response.json()["choices"][0]["message"]["content"] == content


async def test_a_client_that_reads_slowly_gets_a_large_stream_whole() -> None:
    """Writing to a client that does not read pauses (the engine is read no faster than the client takes it)
    and resumes when it reads again: on both paths, the whole stream arrives, in order."""
    events = [b'data: {"n":%d,"pad":"%s"}\n\n' % (n, b"x" * 4000) for n in range(1000)]  # ~4 MB

    async def chat(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        for event in events:
            await response.write(event)
        await response.write(b"data: [DONE]\n\n")
        return response

    async with gateway_before(chat) as (gateway, url):
        host, port = url.removeprefix("http://").split(":")
        body = orjson.dumps({"model": "big", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
        for path in (b"/v1/chat/completions", ASGI.encode()):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)  # a small window: the gateway must wait
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
            reader, writer = await asyncio.open_connection(sock=sock)
            writer.write(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (path, len(body), body))
            await asyncio.sleep(0.5)  # not reading meanwhile
            received = b""
            while not received.endswith(b"0\r\n\r\n"):
                received += await asyncio.wait_for(reader.read(1 << 20), 10)
            writer.close()
            numbers = [int(part.split(b",")[0]) for part in received.split(b'{"n":')[1:]]
            assert numbers == list(range(1000)) and b"data: [DONE]" in received
        assert gateway.lane.answered == 1


@contextlib.asynccontextmanager
async def gateway_before(
    chat: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> AsyncIterator[tuple[Gateway, str]]:
    """A gateway (and its URL) in front of one aiohttp engine serving the model `big` with `chat`."""
    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    engine_url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    table = EndpointTable()
    table.upsert(Endpoint(id="big.0", service="big", models=("big",), base_url=engine_url, ready=True))
    gateway = Gateway(table)
    server = GatewayServer(gateway, "127.0.0.1", 0)
    await server.start()
    try:
        yield gateway, server.url
    finally:
        await server.stop()
        await runner.cleanup()


@pytest.mark.parametrize("path", ["/v1/chat/completions", ASGI])
@pytest.mark.parametrize("stream", [False, True])
async def test_an_answered_request_leaves_nothing_for_the_garbage_collector(
    tmp_path: Path, stream: bool, path: str
) -> None:
    # A reference cycle per request (a call and a callback back to it) left ~20 objects a request to the
    # collector: at ~18,000 requests/s its collections took ~8% of the gateway's CPU. On both paths.
    async with production_gateway(tmp_path / "home", EVERYTHING_ON) as gw:
        secret = await gw.create_key("alice")
        async with gw.client(secret) as client:
            await client.post(path, json={**CHAT, "stream": stream})  # warm: caches, connections
            gc.collect()
            gc.set_debug(gc.DEBUG_SAVEALL)  # what the collector finds is kept in gc.garbage to look at
            try:
                for _ in range(5):
                    answer = await client.post(path, json={**CHAT, "stream": stream})
                    assert answer.status_code == 200
                gc.collect()
                left = [type(o).__qualname__ for o in gc.garbage if type(o).__module__.startswith("servestack.")]
            finally:
                gc.set_debug(0)
                gc.garbage.clear()
        assert gw.gateway.lane.answered == (6 if path != ASGI else 0)
    assert left == []
