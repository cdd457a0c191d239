"""The relay's HTTP/1.1 client against real sockets: reuse, framing, failures — on asyncio and on uvloop."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import pytest
import uvloop

from servestack.gateway.relay.http1 import ConnectError, Http1Pool, ProtocolError
from tests.conftest import free_port

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
JSON = {"Content-Type": "application/json"}


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Callable[[Coroutine[Any, Any, Any]], Any]:
    factory = uvloop.new_event_loop if request.param == "uvloop" else None

    def runner(coro: Coroutine[Any, Any, Any]) -> Any:
        with asyncio.Runner(loop_factory=factory) as r:
            return r.run(coro)

    return runner


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
    )
    return head + await reader.readexactly(length)


async def serve(handler: Handler) -> tuple[asyncio.Server, str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}/v1/chat/completions"


def keep_alive_server(connections: list[int]) -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        try:
            while True:
                request = await read_request(reader)
                body = request.split(b"\r\n\r\n", 1)[1]
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n" % len(body))
                writer.write(body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    return handler


def test_connections_are_kept_alive_and_reused(run: Callable[[Any], Any]) -> None:
    async def scenario() -> tuple[list[bytes], int, int]:
        connections: list[int] = []
        server, url = await serve(keep_alive_server(connections))
        pool = Http1Pool()
        bodies = []
        for i in range(5):
            async with pool.post(url, data=b"hello %d" % i, headers=JSON) as response:
                assert response.status == 200
                assert response.headers.get("content-type") == "text/plain"
                assert response.headers.get("Content-Type") == "text/plain"
                bodies.append(await response.read())
        await pool.close()
        server.close()
        return bodies, pool.connections_made, len(connections)

    bodies, made, accepted = run(scenario())
    assert bodies == [b"hello %d" % i for i in range(5)]
    assert made == accepted == 1


def test_a_get_sends_no_body_and_shares_the_kept_alive_connection(run: Callable[[Any], Any]) -> None:
    """The monitor's probes and scrapes: GET with no Content-Length (a GET has no body), then reused."""
    heads: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                heads.append(head)
                length = next(
                    (int(h.split(b":")[1]) for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")), 0
                )
                await reader.readexactly(length)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def scenario() -> tuple[list[bytes], int]:
        server, url = await serve(handler)
        pool = Http1Pool()
        answers = []
        for _ in range(2):
            async with pool.get(url.replace("/v1/chat/completions", "/health?e=1")) as response:
                answers.append(await response.read())
        async with pool.post(url, data=b"{}", headers=JSON) as response:
            answers.append(await response.read())
        await pool.close()
        server.close()
        return answers, pool.connections_made

    answers, made = run(scenario())
    assert answers == [b"ok\n"] * 3 and made == 1
    assert heads[0].startswith(b"GET /health?e=1 HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"content-length" not in heads[0].lower()
    assert heads[2].startswith(b"POST /v1/chat/completions HTTP/1.1\r\n") and b"Content-Length: 2\r\n" in heads[2]


def test_concurrent_requests_open_more_connections_then_reuse_them(run: Callable[[Any], Any]) -> None:
    async def scenario() -> int:
        server, url = await serve(keep_alive_server([]))
        pool = Http1Pool()

        async def one(i: int) -> bytes:
            async with pool.post(url, data=b"%d" % i, headers=JSON) as response:
                return await response.read()

        for _ in range(3):
            assert await asyncio.gather(*(one(i) for i in range(4))) == [b"0", b"1", b"2", b"3"]
        await pool.close()
        server.close()
        return pool.connections_made

    assert run(scenario()) == 4


async def chunked_stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
        while True:
            await read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
            for i in range(3):
                event = b"data: %d\n\n" % i
                writer.write(b"%x\r\n%s\r\n" % (len(event), event))
                await writer.drain()
                await asyncio.sleep(0.01)
            writer.write(b"0\r\n\r\n")
            await writer.drain()
    writer.close()


def test_a_chunked_stream_arrives_piece_by_piece_and_whole(run: Callable[[Any], Any]) -> None:
    async def scenario() -> tuple[list[bytes], bytes]:
        server, url = await serve(chunked_stream)
        pool = Http1Pool()
        async with pool.post(url, data=b"{}", headers=JSON) as response:
            pieces = [piece async for piece in response.content.iter_any()]
        async with pool.post(url, data=b"{}", headers=JSON) as response:
            first = await response.content.read(4)
            rest = await response.read()
        await pool.close()
        server.close()
        return pieces, first + rest

    pieces, whole = run(scenario())
    assert b"".join(pieces) == whole == b"data: 0\n\ndata: 1\n\ndata: 2\n\n"
    assert len(pieces) >= 2  # relayed as it came, not buffered to the end


def test_a_body_ending_with_the_connection_is_read_whole(run: Callable[[Any], Any]) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nhello, until the end")
        await writer.drain()
        writer.close()

    async def scenario() -> tuple[bytes, int]:
        server, url = await serve(handler)
        pool = Http1Pool()
        for _ in range(2):
            async with pool.post(url, data=b"{}", headers=JSON) as response:
                body = await response.read()
        server.close()
        return body, pool.connections_made

    assert run(scenario()) == (b"hello, until the end", 2)


def test_a_connection_the_server_closed_while_idle_is_replaced(run: Callable[[Any], Any]) -> None:
    """The server answers one request per connection without saying so, like a keep-alive timeout."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.close()

    async def scenario() -> tuple[list[bytes], int]:
        server, url = await serve(handler)
        pool = Http1Pool()
        bodies = []
        for _ in range(3):
            async with pool.post(url, data=b"{}", headers=JSON) as response:
                bodies.append(await response.read())
            await asyncio.sleep(0.1)  # the server closes meanwhile
        server.close()
        return bodies, pool.connections_made

    assert run(scenario()) == ([b"ok"] * 3, 3)


def test_idle_connections_older_than_the_expiry_are_not_reused(run: Callable[[Any], Any]) -> None:
    async def scenario() -> int:
        server, url = await serve(keep_alive_server([]))
        pool = Http1Pool(keepalive_expiry=0.0)
        for _ in range(3):
            async with pool.post(url, data=b"x", headers=JSON) as response:
                await response.read()
        await pool.close()
        server.close()
        return pool.connections_made

    assert run(scenario()) == 3


def test_an_answer_left_unread_closes_its_connection(run: Callable[[Any], Any]) -> None:
    async def scenario() -> tuple[bool, int]:
        closed = asyncio.Event()

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
            await writer.drain()
            await reader.read()  # returns when the client closes
            closed.set()

        server, url = await serve(handler)
        pool = Http1Pool()
        async with pool.post(url, data=b"{}", headers=JSON) as response:
            assert await response.content.read(5) == b"hello"
        await asyncio.wait_for(closed.wait(), 5)
        server.close()
        return closed.is_set(), len(pool._idle.get(("127.0.0.1", int(url.split(":")[2].split("/")[0])), []))

    assert run(scenario()) == (True, 0)


def test_a_refused_connection_is_a_connect_error(run: Callable[[Any], Any]) -> None:
    async def scenario() -> None:
        async with Http1Pool().post(f"http://127.0.0.1:{free_port()}/v1/x", data=b"{}", headers=JSON):
            pass

    with pytest.raises(ConnectError, match="cannot connect"):
        run(scenario())


def test_an_engine_that_goes_silent_times_out(run: Callable[[Any], Any]) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        await writer.drain()
        await asyncio.sleep(5)

    async def scenario() -> list[bytes]:
        server, url = await serve(handler)
        pieces: list[bytes] = []
        try:
            async with Http1Pool(idle_timeout=0.3).post(url, data=b"{}", headers=JSON) as response:
                async for piece in response.content.iter_any():
                    pieces.append(piece)
        finally:
            server.close()
        return pieces

    with pytest.raises(TimeoutError, match="sent nothing"):
        run(scenario())


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf",  # then the connection ends
        b"this is not HTTP\r\n\r\n",
    ],
)
def test_broken_answers_are_protocol_errors(run: Callable[[Any], Any], answer: bytes) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer)
        await writer.drain()
        writer.close()

    async def scenario() -> bytes:
        server, url = await serve(handler)
        try:
            async with Http1Pool().post(url, data=b"{}", headers=JSON) as response:
                return await response.read()
        finally:
            server.close()

    with pytest.raises(ProtocolError):
        run(scenario())


def test_a_header_with_a_line_break_is_refused() -> None:
    with pytest.raises(ProtocolError, match="line break"):
        Http1Pool().request_head("http://127.0.0.1:1/x", 2, {"x-request-id": "a\r\nEvil: 1"})


def test_cancelling_before_the_headers_closes_the_connection(run: Callable[[Any], Any]) -> None:
    """A client that leaves while the engine still queues its request: the engine must see the disconnect."""

    async def scenario() -> bool:
        closed = asyncio.Event()

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await read_request(reader)
            await reader.read()  # no answer; returns when the client closes
            closed.set()

        server, url = await serve(handler)
        pool = Http1Pool()

        async def request() -> None:
            async with pool.post(url, data=b"{}", headers=JSON):
                pass

        task = asyncio.create_task(request())
        await asyncio.sleep(0.1)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await asyncio.wait_for(closed.wait(), 5)
        server.close()
        return closed.is_set()

    assert run(scenario())


def test_connections_of_a_burst_are_dropped_once_they_expire(run: Callable[[Any], Any]) -> None:
    async def scenario() -> int:
        server, url = await serve(keep_alive_server([]))
        pool = Http1Pool(keepalive_expiry=0.2)

        async def one() -> None:
            async with pool.post(url, data=b"x", headers=JSON) as response:
                await response.read()

        await asyncio.gather(*(one() for _ in range(5)))  # a burst: 5 connections
        for _ in range(12):  # then one at a time, never idle long enough to expire the one in use
            await one()
            await asyncio.sleep(0.05)
        idle = sum(len(connections) for connections in pool._idle.values())
        await pool.close()
        server.close()
        return idle

    assert run(scenario()) == 1


def test_a_burst_leaves_at_most_max_idle_connections_open(run: Callable[[Any], Any]) -> None:
    async def scenario() -> tuple[int, int]:
        open_now: list[int] = []

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            open_now.append(1)
            try:
                await keep_alive_server([])(reader, writer)
            finally:
                open_now.pop()

        server, url = await serve(handler)
        pool = Http1Pool(max_idle=2)

        async def one() -> None:
            async with pool.post(url, data=b"x", headers=JSON) as response:
                await response.read()

        await asyncio.gather(*(one() for _ in range(6)))  # a burst: 6 connections at once
        await asyncio.sleep(0.1)  # the engine sees the ones let go close
        idle = sum(len(connections) for connections in pool._idle.values())
        still_open = len(open_now)
        await pool.close()
        server.close()
        return idle, still_open

    assert run(scenario()) == (2, 2)


def test_a_connect_that_hangs_times_out_and_can_be_cancelled(run: Callable[[Any], Any]) -> None:
    """An engine whose accept queue is full: the SYN goes unanswered and the connect waits until its deadline."""

    async def scenario() -> tuple[str, bool, list[dict[str, Any]]]:
        reported: list[dict[str, Any]] = []
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: reported.append(context))
        listening = socket.socket()
        listening.bind(("127.0.0.1", 0))
        listening.listen(0)  # never accepted: one or two connections fill the queue
        port = listening.getsockname()[1]
        fillers = []
        try:
            for _ in range(4):
                filler = socket.socket()
                filler.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    filler.connect(("127.0.0.1", port))
                fillers.append(filler)
            pool = Http1Pool(connect_timeout=0.3)
            with pytest.raises(TimeoutError) as timed_out:
                await pool.connect(("127.0.0.1", port))
            waiting = asyncio.create_task(pool.connect(("127.0.0.1", port)))
            await asyncio.sleep(0.05)
            waiting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiting
            await asyncio.sleep(0.4)  # past the deadline: a cancelled connect reports nothing more
            listening.close()  # the SYNs the two connects sent again now meet a closed port: refused
            await asyncio.sleep(1.5)
            gc.collect()
            return str(timed_out.value), waiting.cancelled(), reported
        finally:
            for filler in fillers:
                filler.close()
            listening.close()

    message, cancelled, reported = run(scenario())
    assert "took longer than 0.3 s" in message and cancelled
    assert reported == []  # no connect left behind to fail unheard ("exception was never retrieved")


def test_an_engine_that_keeps_sending_is_not_timed_out(run: Callable[[Any], Any]) -> None:
    """The idle timeout counts from the last byte: a stream slower in total than the timeout, but never
    silent that long, arrives whole; a second request on the same connection is watched afresh."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(2):
            await read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for n in range(8):
                writer.write(b"1\r\n%d\r\n" % n)
                await writer.drain()
                await asyncio.sleep(0.1)
            writer.write(b"0\r\n\r\n")
            await writer.drain()

    async def scenario() -> list[bytes]:
        server, url = await serve(handler)
        pool = Http1Pool(idle_timeout=0.3)
        bodies = []
        try:
            for _ in range(2):
                async with pool.post(url, data=b"{}", headers=JSON) as response:
                    bodies.append(await response.read())
        finally:
            server.close()
        return bodies

    assert run(scenario()) == [b"01234567"] * 2
