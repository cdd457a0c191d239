"""`python lean_gateway.py PORT UPSTREAM_URL HOME full|default`: servestack's per-request work in a shell of callbacks.

An experiment, not a gateway: it answers the question the per-core target raised — is the cost in the
work servestack does for a request, or in the shell around that work? It runs the gateway's own parts,
built by `build_gateway` from a `gateway:` section at its defaults (or, when `full`, with keys, metrics
and the usage ledger on) and routed by the default policy: the request id, the key lookup, the JSON
parse, the model's resolution to its pool, admission (key limits, metrics, spans), the routing
decision, the request shaped for the engine (`prepare_attempt`), the engine request's head, the
replica's in-flight count and first-byte watch, the token counts read off the answer and the
accounting when it ends (metrics, ledger row, limits, the replica's bookkeeping). What it leaves out
is the shell: no ASGI scope/receive/send, no task and no coroutine per request — the HTTP parser's
callbacks on each side call those parts directly, as the Python floor (floor_proxy.py) passes bytes.

Only the happy path is here: a POST of a generation request whose engine answers 200. An error is
answered in OpenAI's shape; nothing is retried, a deadline is recorded but never enforced, and what the
real gateway does for clients that leave, engines that stall, pipelined requests and full buffers is
not done. Its figure is
therefore a bound from below on what a callback data path in the gateway could reach, measured with
the same parts: `bench/gateway_overhead.py --full --targets ...,python-lean`.
"""

from __future__ import annotations

import asyncio
import resource
import signal
import sys
import time
from pathlib import Path
from typing import Any

import httptools
import orjson
import uvloop

from servestack.asgi import openai_error, parse_object
from servestack.errors import GatewayError
from servestack.gateway import Endpoint, EndpointTable
from servestack.gateway.edge.app import Gateway
from servestack.gateway.edge.build import build_gateway
from servestack.gateway.edge.pipeline import Admission
from servestack.gateway.edge.server import settle_heap
from servestack.gateway.fleet.routing import Attempt, RouteRequest
from servestack.gateway.openai.attempt import prepare_attempt
from servestack.gateway.openai.usage import StreamTap, usage_of
from servestack.gateway.relay.deadline import FirstByteDeadline
from servestack.gateway.relay.exchange import Exchange
from servestack.gateway.relay.headers import upstream_headers
from servestack.gateway.relay.request_ids import REQUEST_ID_SCOPE
from servestack.settings import Settings
from servestack.stack import GatewayConfig


class Request:
    """One request in flight: what the engine side needs to finish it."""

    __slots__ = ("admission", "attempt", "client", "deadline", "exchange", "tap")

    def __init__(
        self, client: ClientSide, exchange: Exchange, admission: Admission, attempt: Attempt, tap: StreamTap | None
    ) -> None:
        self.client = client
        self.exchange = exchange
        self.admission = admission
        self.attempt = attempt
        self.tap = tap
        # The first-byte watch as the real relay keeps it: a record in the replica's set, no timer.
        self.deadline = FirstByteDeadline(exchange, attempt.endpoint, None, retryable=False)
        attempt.endpoint.vitals.waiting.add(self.deadline)


class EngineSide(asyncio.Protocol):
    """One kept-alive connection to the engine."""

    def __init__(self, lane: Lane, key: tuple[str, int]) -> None:
        self.lane = lane
        self.key = key
        self.parser = httptools.HttpResponseParser(self)
        self.request: Request | None = None
        self.body: list[bytes] = []
        self.stream = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_headers_complete(self) -> None:
        request = self.request
        assert request is not None
        exchange = request.exchange
        exchange.status = self.parser.get_status_code()
        exchange.first_byte_at = self.lane.loop.time()
        request.deadline.started()
        self.stream = exchange.stream and request.tap is not None
        if self.stream:
            request.client.transport.write(
                b"HTTP/1.1 %d OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n"
                b"x-request-id: %s\r\n\r\n" % (exchange.status, exchange.request_id.encode())
            )

    def on_body(self, data: bytes) -> None:
        assert self.request is not None
        self.request.attempt.endpoint.vitals.progress += 1
        if self.stream:
            request = self.request
            assert request is not None and request.tap is not None
            part = request.tap.feed(data)
            if part:
                request.client.transport.write(b"%x\r\n%s\r\n" % (len(part), part))
        else:
            self.body.append(data)

    def on_message_complete(self) -> None:
        request, self.request = self.request, None
        assert request is not None
        exchange, client = request.exchange, request.client
        if self.stream:
            assert request.tap is not None
            client.transport.write(b"0\r\n\r\n")
            exchange.prompt_tokens, exchange.completion_tokens = request.tap.usage()
        else:
            body = b"".join(self.body)
            self.body = []
            client.transport.write(
                b"HTTP/1.1 %d OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\nx-request-id: %s\r\n\r\n%s"
                % (exchange.status or 0, len(body), exchange.request_id.encode(), body)
            )
            exchange.prompt_tokens, exchange.completion_tokens = usage_of(body)
        exchange.finished_at = time.monotonic()
        request.attempt.endpoint.in_flight -= 1
        exchange.pool.finish(request.attempt, ok=True)
        request.admission.done(None)
        self.lane.idle.setdefault(self.key, []).append(self)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.request is not None:
            self.request.client.transport.close()


class ClientSide(asyncio.Protocol):
    def __init__(self, lane: Lane) -> None:
        self.lane = lane
        self.parser = httptools.HttpRequestParser(self)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_begin(self) -> None:
        self.headers: list[tuple[bytes, bytes]] = []
        self.parts: list[bytes] = []

    def on_url(self, url: bytes) -> None:
        self.path = url.decode("latin-1")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_body(self, data: bytes) -> None:
        self.parts.append(data)

    def on_message_complete(self) -> None:
        try:
            self.lane.serve(self, b"".join(self.parts))
        except GatewayError as error:
            body = orjson.dumps(openai_error(error))
            self.transport.write(
                b"HTTP/1.1 %d Error\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                % (error.status, len(body), body)
            )


class Lane:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        assert gateway.pipeline is not None
        self.pipeline = gateway.pipeline
        self.http1 = gateway.upstream.session
        self.loop = asyncio.get_running_loop()
        self.idle: dict[tuple[str, int], list[EngineSide]] = {}

    def serve(self, client: ClientSide, body: bytes) -> None:
        gateway, pipeline = self.gateway, self.pipeline
        scope: dict[str, Any] = {"type": "http", "method": "POST", "path": client.path, "headers": client.headers}
        scope[REQUEST_ID_SCOPE] = gateway.request_ids.of(client.headers)
        pipeline.authenticate(scope)
        payload = parse_object(body)
        stream = payload.get("stream") is True
        target = gateway.resolve(scope, str(payload.get("model")), stream=stream)
        exchange = Exchange.of(scope, target, stream=stream, body=body, payload=payload)
        admission = pipeline.admit(exchange)
        attempt = exchange.pool.choose(RouteRequest(payload))
        endpoint = exchange.endpoint = attempt.endpoint
        exchange.attempts = 1
        pipeline.prepare(exchange, endpoint)
        tap = prepare_attempt(exchange, endpoint, count_tokens=gateway.counts_tokens)
        body = exchange.body
        headers = upstream_headers(exchange, endpoint)
        key, head = self.http1.request_head(endpoint.base_url + exchange.upstream_path, len(body), headers)
        endpoint.in_flight += 1
        request = Request(client, exchange, admission, attempt, tap)
        idle = self.idle.get(key)
        if idle:
            engine = idle.pop()
            engine.request = request
            engine.transport.write(head + body)
        else:
            self.loop.create_task(self._connect(key, request, head + body))

    async def _connect(self, key: tuple[str, int], request: Request, payload: bytes) -> None:
        _, engine = await self.loop.create_connection(lambda: EngineSide(self, key), *key)
        engine.request = request
        engine.transport.write(payload)


FULL = {"auth": {"enabled": True}, "metrics": {"enabled": True}, "usage": {"enabled": True}}


async def serve(port: int, upstream: str, home: Path, full: bool) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    table = EndpointTable()
    endpoint = Endpoint("sim.0", "sim", ("sim",), upstream, ready=True, engine="sim")
    table.upsert(endpoint)
    config = GatewayConfig.model_validate(FULL if full else {})
    gateway = build_gateway(table, config, Settings(home=home))
    assert gateway.pipeline is not None
    await gateway.pipeline.start()
    lane = Lane(gateway)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: ClientSide(lane), "127.0.0.1", port, backlog=4096)
    settle_heap()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    print(f"listening on 127.0.0.1:{port}", flush=True)
    await stop.wait()
    server.close()
    await gateway.pipeline.stop()


if __name__ == "__main__":
    uvloop.run(serve(int(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), sys.argv[4] == "full"))
