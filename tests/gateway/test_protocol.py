"""The gateway's connection: a response's head and body leave in one send(); a request's head is capped."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from servestack.gateway.edge.app import Gateway
from servestack.gateway.edge.corked import CorkedTransport
from servestack.gateway.edge.server import GatewayServer
from servestack.stack import GatewayConfig
from tests.gateway.conftest import Harness

pytestmark = pytest.mark.anyio


class RecordingTransport:
    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "written after close"
        self.sent.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


async def test_writes_in_one_tick_leave_together_and_later_ones_on_their_own() -> None:
    raw = RecordingTransport()
    corked = CorkedTransport(raw, asyncio.get_running_loop())  # type: ignore[arg-type]
    corked.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    corked.write(b"hi")
    assert raw.sent == []  # held until the end of this tick
    await asyncio.sleep(0)
    assert raw.sent == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi"]

    corked.write(b"data: 1\n\n")
    await asyncio.sleep(0)
    corked.write(b"data: 2\n\n")
    await asyncio.sleep(0)
    assert raw.sent[1:] == [b"data: 1\n\n", b"data: 2\n\n"]  # a stream's chunks are not held back


async def test_close_sends_what_is_held_first_and_a_gone_client_gets_nothing() -> None:
    raw = RecordingTransport()
    corked = CorkedTransport(raw, asyncio.get_running_loop())  # type: ignore[arg-type]
    corked.write(b"last words")
    corked.close()
    assert raw.sent == [b"last words"] and raw.closed

    gone = RecordingTransport()
    corked = CorkedTransport(gone, asyncio.get_running_loop())  # type: ignore[arg-type]
    corked.write(b"too late")
    gone.closed = True  # the client disconnected within the tick
    await asyncio.sleep(0)
    assert gone.sent == []


async def exchange_raw(url: str, chunks: list[bytes]) -> bytes:
    """Send `chunks` on one raw connection (stopping if the server closes it) and read the answer to its end."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        for chunk in chunks:
            writer.write(chunk)
            await writer.drain()
    except ConnectionError:
        pass  # the server closed the connection mid-way: its answer is already in the buffer
    try:
        return await asyncio.wait_for(reader.read(-1), timeout=10)
    except ConnectionError:
        return b""
    finally:
        writer.close()


def post(path: str, body: bytes, extra: bytes = b"") -> bytes:
    return (
        b"POST " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\n"
        + extra + b"Content-Length: %d\r\n\r\n" % len(body) + body
    )  # fmt: skip


CRLF = b"\r\n"
BODY = b'{"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}'


async def test_a_request_head_past_the_cap_is_refused_with_431_and_the_connection_closed(gateway: Harness) -> None:
    start = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
    flood = [start] + [b"X-Flood-%d: %s\r\n" % (i, b"a" * 1000) for i in range(1024)]  # 1 MiB of headers
    answer = await exchange_raw(gateway.url, flood)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431 ")
    error = json.loads(body)["error"]
    assert error["code"] == "request_header_fields_too_large" and "65536 bytes" in error["message"]
    assert gateway.engine.received == []

    ollama = await exchange_raw(gateway.url, [b"GET /api/tags HTTP/1.1\r\nX-Big: " + b"b" * 70_000 + b"\r\n\r\n"])
    assert ollama.startswith(b"HTTP/1.1 431 ") and json.loads(ollama.partition(b"\r\n\r\n")[2])["error"]


async def test_heads_under_the_cap_and_large_bodies_are_served(gateway: Harness) -> None:
    under = await exchange_raw(gateway.url, [post("/v1/chat/completions", BODY, b"X-Big: " + b"c" * 60_000 + b"\r\n")])
    assert under.startswith(b"HTTP/1.1 200 ")
    # A small head and a large body arriving together: only the head counts.
    big = BODY[:-1] + b', "padding": "' + b"d" * 500_000 + b'"}'
    whole = await exchange_raw(gateway.url, [post("/v1/chat/completions", big)])
    assert whole.startswith(b"HTTP/1.1 200 ")
    # Kept-alive: the second request's head is counted afresh.
    keep = post("/v1/chat/completions", BODY).replace(b"Connection: close", b"Connection: keep-alive")
    two = await exchange_raw(
        gateway.url, [keep + post("/v1/chat/completions", BODY, b"X-Big: " + b"e" * 50_000 + b"\r\n")]
    )
    assert two.count(b"HTTP/1.1 200 ") == 2


async def test_the_cap_is_the_stack_files_setting(gateway: Harness) -> None:
    config = GatewayConfig.model_validate({"limits": {"max_header_bytes": "4KiB"}})
    server = GatewayServer(
        Gateway(gateway.table), "127.0.0.1", 0, timeouts=config.timeouts, head_cap=config.limits.max_header_bytes
    )
    await server.start()
    try:
        small = await exchange_raw(
            server.url, [post("/v1/chat/completions", BODY, b"X-Big: " + b"f" * 3_000 + b"\r\n")]
        )
        assert small.startswith(b"HTTP/1.1 200 ")
        large = await exchange_raw(
            server.url, [post("/v1/chat/completions", BODY, b"X-Big: " + b"f" * 5_000 + b"\r\n")]
        )
        assert large.startswith(b"HTTP/1.1 431 ") and b"4096 bytes" in large
    finally:
        await server.stop()


async def test_a_request_that_does_not_parse_gets_a_400_in_the_shape_of_its_route(gateway: Harness) -> None:
    garbage = await exchange_raw(gateway.url, [b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 hello\r\n\r\n"])  # TLS
    head, _, body = garbage.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ") and b"connection: close" in head
    error = json.loads(body)["error"]
    assert error["code"] == "invalid_request" and error["message"].startswith("invalid HTTP request")

    bad_header = b"GET /api/tags HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n"
    ollama = await exchange_raw(gateway.url, [bad_header])
    assert ollama.startswith(b"HTTP/1.1 400 ")
    assert json.loads(ollama.partition(b"\r\n\r\n")[2])["error"].startswith("invalid HTTP request")
    assert gateway.engine.received == []


async def test_pipelined_requests_for_the_app_are_answered_in_order(gateway: Harness) -> None:
    keep = b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n"
    health = b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    answers = await exchange_raw(gateway.url, [keep + keep + health])
    parts = answers.split(b"HTTP/1.1 200 ")
    assert len(parts) == 4 and b'"object":"list"' in parts[1] + parts[2]
    assert b'"object":"list"' not in parts[3]


@pytest.mark.parametrize("read_timeouts", [True, False])
async def test_an_idle_kept_alive_connection_is_closed_after_the_keep_alive_timeout(
    gateway: Harness, read_timeouts: bool
) -> None:
    timeouts = GatewayConfig().timeouts if read_timeouts else None
    server = GatewayServer(Gateway(gateway.table), "127.0.0.1", 0, timeouts=timeouts, keep_alive=0.4)
    await server.start()
    try:
        host, port = server.url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        keep = post("/v1/chat/completions", BODY).replace(b"Connection: close", b"Connection: keep-alive")
        for _ in range(2):  # a second request on the connection resets the wait
            writer.write(keep)
            head = await reader.readuntil(CRLF + CRLF)
            assert head.startswith(b"HTTP/1.1 200 ")
            length = int(head.lower().split(b"content-length: ")[1].split(CRLF)[0])
            await reader.readexactly(length)
            await asyncio.sleep(0.2)  # idle, but for less than the timeout
        idle_since = time.monotonic()
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the gateway
        assert 0.2 < time.monotonic() - idle_since < 2.0
        writer.close()
    finally:
        await server.stop()
