"""The production pipeline around every relayed request: admit it, then account for it.

    authenticate (app edge)  →  the surface resolves the model to its pool (refused: a 404, accounted for)
                             →  admit: model allowed? key limits, spans opened; the model's queue
                             →  prepare(endpoint): the upstream span and its traceparent
                             →  relay (openai/relay.py, ollama/relay.py: token counts read off the answer)
                             →  finish: key budget, ledger row, metrics, log line, spans

Every part is optional (None when the stack file switches it off), and every per-request step is
O(1) in memory: no database, no network, no re-encoding (the body is the engine's business:
openai/attempt.py). Background work — committing usage rows, reloading keys, scraping engines,
flushing logs — runs in tasks started with the gateway.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from servestack.asgi import Scope
from servestack.errors import GatewayError, ModelNotAllowed
from servestack.gateway.admission.auth import KEY_SCOPE, KeyRing
from servestack.gateway.admission.keys import ApiKey
from servestack.gateway.admission.limits import KeyLimiter
from servestack.gateway.admission.queues import ModelQueue, ModelQueues
from servestack.gateway.edge.http_connection import CLIENT_GONE
from servestack.gateway.fleet.endpoint import Endpoint
from servestack.gateway.relay.exchange import Exchange
from servestack.gateway.relay.request_ids import REQUEST_ID_SCOPE
from servestack.gateway.telemetry.access_log import AccessLog
from servestack.gateway.telemetry.metrics import GatewayMetrics, _Series
from servestack.gateway.telemetry.tracing import Tracing
from servestack.gateway.telemetry.usage import UsageLedger

CLIENT_CLOSED = 499  # nginx's code for "the client went away first"


class Pipeline:
    def __init__(
        self,
        *,
        keys: KeyRing | None = None,
        limiter: KeyLimiter | None = None,
        queues: ModelQueues | None = None,
        ledger: UsageLedger | None = None,
        metrics: GatewayMetrics | None = None,
        tracing: Tracing | None = None,
        access_log: AccessLog | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.keys = keys
        self.limiter = limiter
        self.queues = queues
        self.ledger = ledger
        self.metrics = metrics
        self.tracing = tracing
        self.access_log = access_log
        self.clock = clock
        self.wall_clock = wall_clock
        self.counts_tokens = ledger is not None or metrics is not None or limiter is not None or tracing is not None

    async def start(self) -> None:
        for part in (self.access_log, self.keys, self.ledger):
            if part is not None:
                await part.start()

    async def stop(self) -> None:
        for part in (self.ledger, self.keys, self.access_log):
            if part is not None:
                await part.stop()
        if self.tracing is not None:
            await asyncio.to_thread(self.tracing.shutdown)

    def authenticate(self, scope: Scope) -> None:
        """Leave the caller's key (or None) in `scope`; raise AuthenticationFailed (401)."""
        if self.keys is None:
            return
        try:
            scope[KEY_SCOPE] = self.keys.authenticate(scope["headers"])
        except GatewayError as error:
            self.refused(scope, error)
            raise

    def refused(self, scope: Scope, error: GatewayError, *, model: str | None = None, stream: bool = False) -> None:
        """Account for a request turned away before admission: a missing or bad key (no `model`), or a
        `model` nobody serves (counted under model="unknown", with a ledger row)."""
        if self.metrics is not None:
            self.metrics.refused(error.status, unknown_model=model is not None)
        key: ApiKey | None = scope.get(KEY_SCOPE)
        request_id = scope.get(REQUEST_ID_SCOPE, "")
        if self.ledger is not None and model is not None:
            row = (model, None, None, scope["path"], int(stream), error.status, None, None, 0, None, None)
            self.ledger.append((self.wall_clock(), request_id, *_key_columns(key), *row))
        if self.access_log is not None:
            self.access_log.refused(scope["method"], scope["path"], error, request_id=request_id, key=key, model=model)

    def admit(self, exchange: Exchange) -> Admission:
        """Check the key's model and limits (a refusal is accounted for, then raised).

        The caller waits for `turn()` when the admission `waits`, picks a replica, relays, and
        calls `done(error or None)` in every case.
        """
        admission = Admission(self, exchange)
        try:
            admission.check()
        except BaseException as exc:
            admission.done(exc)
            raise
        return admission

    def prepare(self, exchange: Exchange, endpoint: Endpoint) -> None:
        """Account for the replica the exchange goes to (called again if a retry picks another)."""
        if self.tracing is not None:
            self.tracing.upstream(exchange, endpoint)

    def finish(self, exchange: Exchange, series: _Series | None, limited: bool) -> None:
        tokens = (exchange.prompt_tokens or 0) + (exchange.completion_tokens or 0)
        if limited and self.limiter is not None and exchange.key is not None:
            self.limiter.release(exchange.key, tokens)
        if self.metrics is not None:
            self.metrics.observe(exchange, series or self.metrics.series(exchange.model), in_flight=series is not None)
        if self.ledger is not None:
            self.ledger.append(self._row(exchange))
        if self.access_log is not None:
            self.access_log.request(exchange)
        if self.tracing is not None:
            self.tracing.finish(exchange)

    def _row(self, exchange: Exchange) -> tuple[object, ...]:
        endpoint = exchange.endpoint
        return (
            self.wall_clock(),
            exchange.request_id,
            *_key_columns(exchange.key),
            exchange.model,
            exchange.alias,
            endpoint.id if endpoint is not None else None,
            exchange.path,
            int(exchange.stream),
            exchange.status or 0,
            exchange.prompt_tokens,
            exchange.completion_tokens,
            int(exchange.usage_estimated),
            exchange.ttft,
            exchange.duration,
        )


class Admission:
    """One request inside the pipeline: checked when made, accounted for by `done` (whatever happened).

    Plain methods rather than an async context manager: this runs for every request.
    """

    __slots__ = ("exchange", "limited", "pipeline", "queue", "queued_at", "series", "waits")

    def __init__(self, pipeline: Pipeline, exchange: Exchange) -> None:
        self.pipeline = pipeline
        self.exchange = exchange
        self.series: _Series | None = None
        self.queue: ModelQueue | None = None
        self.waits: ModelQueue | None = None  # the model's queue, when it has one: `await turn()`
        self.queued_at = 0.0
        self.limited = False

    def check(self) -> None:
        pipeline, exchange = self.pipeline, self.exchange
        key = exchange.key
        if key is not None and not key.admin:
            if key.models is not None and not _allowed(key, exchange):
                raise ModelNotAllowed(
                    f"This key may not use the model '{exchange.alias or exchange.model}'", param="model"
                )
            if pipeline.limiter is not None:
                pipeline.limiter.acquire(key)
                self.limited = True
        if pipeline.metrics is not None:
            self.series = pipeline.metrics.series(exchange.model)
            self.series.in_flight += 1
        if pipeline.tracing is not None:
            pipeline.tracing.begin(exchange)
        if pipeline.queues is not None:
            self.waits = pipeline.queues.get(exchange.model)

    async def turn(self) -> None:
        """Wait for the model's queue to let this request through (503 when full or too slow)."""
        assert self.waits is not None
        await self.waits.acquire(self.exchange.model)
        self.queue, self.queued_at = self.waits, self.pipeline.clock()

    def done(self, exc: BaseException | None) -> None:
        exchange, pipeline = self.exchange, self.pipeline
        now = pipeline.clock()
        if exchange.finished_at is None:
            exchange.finished_at = now
        if isinstance(exc, GatewayError):
            exchange.status, exchange.error = exc.status, exc
        elif isinstance(exc, asyncio.CancelledError) and exc.args == (CLIENT_GONE,):
            if not exchange.done_sent:  # else it closed at the stream's `[DONE]`: it got the whole answer
                exchange.status = CLIENT_CLOSED  # also when the engine's 200 had begun: it did not get it all
        elif exc is not None and exchange.status is None:
            exchange.status = CLIENT_CLOSED if isinstance(exc, asyncio.CancelledError) else 500
        if self.queue is not None:
            self.queue.release(now - self.queued_at)
        pipeline.finish(exchange, self.series, self.limited)


def _allowed(key: ApiKey, exchange: Exchange) -> bool:
    return key.allows(exchange.model) or (exchange.alias is not None and key.allows(exchange.alias))


def _key_columns(key: ApiKey | None) -> tuple[str | None, str | None]:
    return (key.id, key.name) if key is not None else (None, None)
