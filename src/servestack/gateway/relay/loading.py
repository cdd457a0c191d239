"""Requests for on-demand services: held while the controller loads their model, then relayed in order.

The gateway decides nothing about memory; the controller does (controller/ondemand.py). The seam is
the `Loader` the controller hands the gateway:

    request for model M ─▶ pool(M) on-demand? ─no─▶ relay as usual
                                 │yes
                          claim(service)            the service may not be evicted from now on
                          a replica ready? ─yes─▶ relay
                                 │no
                          wait: ensure_loaded(service), at most `load_timeout`, at most
                                `load_max_waiting` waiters per service (then 503 + Retry-After)
                                 │ loaded                       │ failed / timed out
                                 ▼                              ▼
                               relay                  503 naming the service (and the engine's last lines)
                          release(service, keep_alive)  when the request ends, whatever happened

Waiters resume in arrival order (the controller resolves them together; asyncio runs them FIFO).
While an OpenAI stream waits, it is sent SSE comment lines (`: loading model …`) every
`load_keepalive` seconds, beginning after the first interval, so proxies and the client keep the
connection; the official `openai` client skips comment lines. Once that has begun, the answer's status
is 200: a failed load then ends the stream with an error event, which the client raises as an error.
Ollama streams get nothing while they wait, as with Ollama itself (its client reads each line as JSON).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Protocol

from servestack.asgi import Message, Send, sse_error_event
from servestack.errors import GatewayError, UpstreamUnavailable
from servestack.gateway.fleet.endpoint import Endpoint, EndpointState
from servestack.gateway.fleet.pool import Pool
from servestack.gateway.relay.exchange import Exchange

OPENAI_STREAMS = frozenset({"/v1/chat/completions", "/v1/completions"})
SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]


@dataclass(frozen=True)
class Residence:
    """What Ollama's /api/ps says of a loaded service: its memory, and when it unloads if it stays idle."""

    size_bytes: int  # weights and KV cache, wherever they are
    vram_bytes: int  # the part on GPUs (0 on the CPU)
    expires_at: float | None  # wall-clock time; None: never (an always service, or keep_alive forever)


class Loader(Protocol):
    """What the controller does for the gateway: load on demand, and learn which services are in use."""

    def claim(self, service: str) -> None:
        """A request for `service` arrived: it may not be evicted until the request is released."""
        ...

    def release(self, service: str, keep_alive: float | None = None) -> None:
        """That request ended; `keep_alive` (seconds, Ollama's per-request override) or None: the service's own."""
        ...

    async def ensure_loaded(self, service: str) -> None:
        """Return once `service` has a ready replica; raise UpstreamUnavailable when it cannot be loaded."""
        ...

    async def unload(self, service: str) -> None:
        """Unload `service` now if nothing uses it, else as soon as its requests end."""
        ...

    def residence(self, service: str) -> Residence | None:
        """What `service` holds while loaded, and when it expires (None: nothing known)."""
        ...


class LoadGate:
    """Holds requests for on-demand services that are not loaded, while the loader loads them."""

    def __init__(
        self,
        loader: Loader,
        *,
        timeout: float,
        max_waiting: int,
        keepalive: float,
        on_wait: Callable[[str, float], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`on_wait(model, seconds)` hears how long each request waited for its model to load."""
        self.loader = loader
        self.timeout = timeout
        self.max_waiting = max_waiting
        self.keepalive = keepalive
        self.clock = clock
        self.on_wait = on_wait
        self.waiting: dict[str, int] = {}  # per service: requests waiting for its load now

    @contextlib.asynccontextmanager
    async def held(self, pool: Pool, exchange: Exchange, send: Send) -> AsyncIterator[Send]:
        """Claim the pool's on-demand service for the request's whole life; wait for its load when needed.

        Yields the `send` to relay with (a stream that was kept alive has begun its answer already).
        """
        service = on_demand_service(pool)
        self.loader.claim(service)
        try:
            if must_load(pool):
                send = await self._wait(service, exchange, send)
            yield send
        finally:
            self.loader.release(service, exchange.keep_alive)

    async def load(self, pool: Pool, model: str, keep_alive: float | None = None) -> None:
        """Load the pool's on-demand service (Ollama's empty /api/generate) without a request to relay."""
        service = on_demand_service(pool)
        self.loader.claim(service)
        try:
            if must_load(pool):
                await self._ensure(service, model)
        finally:
            self.loader.release(service, keep_alive)

    async def _wait(self, service: str, exchange: Exchange, send: Send) -> Send:
        waiting = self.waiting.get(service, 0)
        if waiting >= self.max_waiting:
            raise UpstreamUnavailable(
                f"{waiting} requests are already waiting for the model '{exchange.model}' to load; try again shortly",
                retry_after=5,
            )
        self.waiting[service] = waiting + 1
        kept = _KeptAlive(send, self.keepalive, exchange.model) if _keeps_alive(exchange) else None
        started = self.clock()
        try:
            await self._ensure(service, exchange.model)
        except GatewayError as error:
            if kept is not None and kept.began:
                await kept.fail(error)  # the answer began as a stream: the error is its last event
            raise
        finally:
            self.waiting[service] -= 1
            if kept is not None:
                kept.stop()
            if self.on_wait is not None:
                self.on_wait(exchange.model, self.clock() - started)
        return kept if kept is not None and kept.began else send

    async def _ensure(self, service: str, model: str) -> None:
        try:
            await asyncio.wait_for(self.loader.ensure_loaded(service), self.timeout)
        except TimeoutError:
            raise UpstreamUnavailable(
                f"The model '{model}' (service {service!r}) did not load within {self.timeout:g}s "
                "(gateway.load_timeout); it may still be loading",
                retry_after=10,
            ) from None


def on_demand_service(pool: Pool) -> str:
    """The on-demand service a request for the pool claims and loads: one on its way first, else the first."""
    on_demand = [e for e in pool.endpoints if e.on_demand]
    coming = [e for e in on_demand if e.state in (EndpointState.READY, EndpointState.STARTING)]
    return (coming or on_demand)[0].service


def must_load(pool: Pool) -> bool:
    """No replica can take a request now, and an on-demand one can be loaded (not one stopped by a user)."""
    return not pool.candidates() and any(_loadable(e) for e in pool.endpoints)


def _loadable(endpoint: Endpoint) -> bool:
    if not endpoint.on_demand or endpoint.state is EndpointState.STOPPED:
        return False
    return not (endpoint.state is EndpointState.READY and not endpoint.vitals.draining)


def _keeps_alive(exchange: Exchange) -> bool:
    return exchange.stream and exchange.path in OPENAI_STREAMS


class _KeptAlive:
    """A stream's answer begun early: SSE comments while the model loads, then the relay's bytes.

    The relay's own response start is dropped (the status is 200 already); an engine error answered
    before its first byte becomes the stream's error event.
    """

    def __init__(self, send: Send, interval: float, model: str) -> None:
        self._send = send
        self.began = False
        self._task: asyncio.Task[None] | None = asyncio.create_task(self._beat(interval, model))
        self._error_status: int | None = None

    async def _beat(self, interval: float, model: str) -> None:
        line = f": loading model {model}\n\n".encode()
        while True:
            await asyncio.sleep(interval)
            if not self.began:
                await self._send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
                self.began = True
            await self._send({"type": "http.response.body", "body": line, "more_body": True})

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def fail(self, error: GatewayError) -> None:
        self.stop()
        await self._send({"type": "http.response.body", "body": sse_error_event(error), "more_body": True})
        await self._send({"type": "http.response.body", "body": b""})

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            status = message.get("status", 200)
            self._error_status = status if status >= 400 else None
            return
        if self._error_status is not None and message.get("body"):
            error = GatewayError(message["body"].decode("utf-8", "replace")[:500])
            message = {**message, "body": sse_error_event(error)}
        await self._send(message)
