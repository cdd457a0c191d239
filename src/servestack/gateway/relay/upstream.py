"""Relaying one request to an engine and its answer back, bytes untouched.

One pool of keep-alive connections (`http1.Http1Pool`) serves every request. Non-streaming answers
are read whole and sent with their status and content type; streams are relayed chunk by chunk as
they arrive. An engine's error answer is not relayed but raised in the gateway's terms
(engine_errors.py), and a stream that ends before its first byte is the engine's failure. The wait
for an answer to begin is bounded by the first-byte deadline (deadline.py); every answer and chunk
received counts as the engine's progress. A client that disconnects has its request cancelled by
the server (protocol.py), which closes the engine connection so the engine stops generating.
"""

from __future__ import annotations

import asyncio
import time
from typing import Literal

from servestack.asgi import Send, send_bytes, sse_error_event
from servestack.errors import GatewayError, UpstreamError, UpstreamTimeout, UpstreamUnavailable
from servestack.gateway.fleet.endpoint import Endpoint
from servestack.gateway.relay.deadline import NO_DEADLINE, Deadline, FirstByteDeadline
from servestack.gateway.relay.engine_errors import engine_error
from servestack.gateway.relay.exchange import Exchange
from servestack.gateway.relay.http1 import ConnectError, Http1Pool, Response
from servestack.gateway.relay.request_ids import for_engine

FORWARDED_REQUEST_HEADERS = (b"accept", b"traceparent", b"tracestate")
RELAYED_RESPONSE_HEADERS = ("Content-Type", "Content-Encoding", "Cache-Control")  # the request id is the gateway's


class Upstream:
    """The gateway's client side: one connection pool to every engine."""

    def __init__(
        self,
        connect_timeout: float = 5.0,
        idle_timeout: float = 600.0,
        first_byte_timeout: float | Literal["auto"] = "auto",
    ) -> None:
        """`first_byte_timeout`: "auto" (scaled to each request), seconds, or 0 for none (deadline.py)."""
        self._connect_timeout = connect_timeout
        self._idle_timeout = idle_timeout
        self.first_byte_timeout = first_byte_timeout
        self._session: Http1Pool | None = None

    def first_byte_deadline(self, exchange: Exchange, endpoint: Endpoint) -> Deadline:
        """Bounds the wait for `exchange`'s answer from `endpoint` to begin (`async with`; `started()` once it has)."""
        timeout = self.first_byte_timeout
        if timeout == "auto":
            return FirstByteDeadline(exchange, endpoint, None, retryable=exchange.retryable)
        if not timeout:
            return NO_DEADLINE
        return FirstByteDeadline(exchange, endpoint, timeout, retryable=exchange.retryable)

    @property
    def deadline_check_every(self) -> float:
        """How often deadlines must be checked to end each within a quarter of its length (at most a second)."""
        timeout = self.first_byte_timeout
        return 1.0 if timeout == "auto" or not timeout else min(1.0, max(0.02, timeout / 4))

    @property
    def session(self) -> Http1Pool:
        if self._session is None:
            self._session = Http1Pool(connect_timeout=self._connect_timeout, idle_timeout=self._idle_timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def relay(self, exchange: Exchange, endpoint: Endpoint, send: Send) -> None:
        """Send the exchange's body to `endpoint` and relay the answer to `send`.

        A GatewayError raised from here means nothing was sent to the client yet, so the request
        may be tried elsewhere (the dispatcher decides: an engine failure may, a 4xx may not).
        """
        headers = upstream_headers(exchange, endpoint)
        exchange.endpoint = endpoint
        endpoint.in_flight += 1
        try:
            if exchange.stream:
                await self._relay_stream(exchange, endpoint, headers, send)
            else:
                await self._relay_whole(exchange, endpoint, headers, send)
        finally:
            endpoint.in_flight -= 1
            exchange.finished_at = time.monotonic()

    async def _relay_whole(self, exchange: Exchange, endpoint: Endpoint, headers: dict[str, str], send: Send) -> None:
        url = endpoint.base_url + exchange.path
        first_byte = self.first_byte_deadline(exchange, endpoint)
        try:
            async with first_byte, self.session.post(url, data=exchange.body, headers=headers) as resp:
                payload = await resp.read()
                endpoint.vitals.progress += 1
                exchange.status = resp.status
                exchange.first_byte_at = time.monotonic()
                exchange.response = payload
                relayed = _relayed_headers(resp)
        except Exception as exc:
            raise _upstream_error(endpoint, exc, first_byte) from exc
        if resp.status >= 400:
            raise engine_error(endpoint, resp.status, payload, exchange.request_id)
        await send_bytes(send, resp.status, payload, relayed)

    async def _relay_stream(self, exchange: Exchange, endpoint: Endpoint, headers: dict[str, str], send: Send) -> None:
        url = endpoint.base_url + exchange.path
        vitals = endpoint.vitals
        first_byte = self.first_byte_deadline(exchange, endpoint)
        started = False
        try:
            async with first_byte, self.session.post(url, data=exchange.body, headers=headers) as resp:
                exchange.status = resp.status
                if resp.status >= 400:
                    raise engine_error(endpoint, resp.status, await resp.read(), exchange.request_id)
                # The answer starts with its first chunk: until then a failure can still be retried.
                start = {"type": "http.response.start", "status": resp.status, "headers": _relayed_headers(resp)}
                tap = exchange.tap  # reads token usage; holds back a partial event until its end arrives
                async for chunk in resp.content.iter_any():
                    vitals.progress += 1
                    if not started:
                        first_byte.started()
                        exchange.first_byte_at = time.monotonic()
                        await send(start)
                        started = True
                    if tap is not None and not (chunk := tap.feed(chunk)):
                        continue
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                if not started:  # llama-cpp-python does this when its generator fails on the request
                    raise UpstreamError(f"the engine for {endpoint.service!r} ended its stream without an answer")
                if tap is not None and (rest := tap.close()):
                    await send({"type": "http.response.body", "body": rest, "more_body": True})
        except GatewayError:
            raise
        except Exception as exc:
            if not started:
                raise _upstream_error(endpoint, exc, first_byte) from exc
            # Headers are gone: the error can only travel as a last event of the stream.
            error = UpstreamError(f"the engine for {endpoint.service!r} failed mid-stream: {_describe(exc)}")
            exchange.error = error
            await send({"type": "http.response.body", "body": sse_error_event(error), "more_body": True})
        await send({"type": "http.response.body", "body": b""})


def upstream_headers(exchange: Exchange, endpoint: Endpoint) -> dict[str, str]:
    """The headers a request is sent to `endpoint` with: the client's that matter, and its id as the engine takes it."""
    headers = {"Content-Type": "application/json"}
    for name, value in exchange.headers:
        if name in FORWARDED_REQUEST_HEADERS:
            headers[name.decode()] = value.decode("latin-1")
    if exchange.request_id:
        headers["X-Request-Id"] = for_engine(exchange.request_id, endpoint.dialect)
    return headers


def _relayed_headers(resp: Response) -> list[tuple[bytes, bytes]]:
    return [
        (name.lower().encode(), value.encode("latin-1"))
        for name in RELAYED_RESPONSE_HEADERS
        if (value := resp.headers.get(name)) is not None
    ]


def _upstream_error(endpoint: Endpoint, exc: BaseException, first_byte: Deadline = NO_DEADLINE) -> GatewayError:
    where = f"the engine for {endpoint.service!r} ({endpoint.base_url})"
    if isinstance(exc, ConnectError):
        return UpstreamUnavailable(f"{where} is not reachable: {_describe(exc)}", retry_after=5)
    if first_byte.reason is not None:
        return UpstreamTimeout(f"{where} {first_byte.reason}")
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return UpstreamTimeout(f"{where} did not answer in time")
    return UpstreamError(f"{where} failed: {_describe(exc)}")


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
