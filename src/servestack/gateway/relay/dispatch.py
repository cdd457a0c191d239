"""Sending one request to its pool: choose a replica, relay, and retry elsewhere on an early failure.

Before any replica is chosen, a generation prompt that cannot fit the pool's context window is
refused (400 `context_length_exceeded`, prompt.py).

A failure before the first byte reached the client (connection refused or reset, an engine 5xx, a
stream cut before its first chunk, a first-byte deadline) is retried on another replica of the
pool, at most `retries` times, never on a replica already tried, and only while the retry budget
allows (a request whose replica went away, its node dead, is retried whatever the budget says); an
error the engine answered about the request itself (4xx) is not. The last attempt
relays the engine's own answer, whatever it is. A failure after the first byte cannot be retried:
the relay ends the stream with an error event. Every attempt's outcome goes to the endpoint's
circuit breaker and to the pool's policy, except the gateway's own shortage of file descriptors,
which is neither retried nor held against the replica.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from servestack.asgi import Message, Scope, Send
from servestack.errors import GatewayError, OpenFilesExhausted, ReplicaGone
from servestack.gateway.admission.keys import ApiKey
from servestack.gateway.fleet.endpoint import Endpoint
from servestack.gateway.fleet.names import ModelNames, Target
from servestack.gateway.fleet.pool import Pool
from servestack.gateway.fleet.routing import Attempt, RouteRequest
from servestack.gateway.fleet.table import EndpointTable
from servestack.gateway.relay.exchange import Exchange
from servestack.gateway.relay.loading import LoadGate
from servestack.gateway.relay.prompt import GENERATION_PATHS, check_context
from servestack.gateway.relay.retry import RetryBudget
from servestack.gateway.relay.upstream import Upstream

# A surface's way to get its answer from one replica and translate it for the client (openai/relay.py,
# ollama/relay.py), and the pipeline's per-replica preparation of an exchange.
Relay = Callable[[Exchange, Endpoint, Send], Awaitable[None]]
Prepare = Callable[[Exchange, Endpoint], None]


class GatewayCore(Protocol):
    """What the API surfaces (OpenAI, Ollama, SGLang's /generate) use of the gateway app."""

    table: EndpointTable
    names: ModelNames
    upstream: Upstream
    max_body_bytes: int
    started_at: int
    gate: LoadGate | None
    counts_tokens: bool  # the relays read token usage off answers (usage ledger, metrics, limits, tracing)

    def resolve(self, scope: Scope, name: str, *, stream: bool) -> Target:
        """The pool a request for model `name` goes to; a 404 (accounted for) when nobody serves it."""
        ...

    def visible_models(self, key: ApiKey | None) -> list[str]:
        """The served names and aliases the holder of `key` may see."""
        ...

    async def forward(self, exchange: Exchange, send: Send, relay: Relay) -> None:
        """Admit `exchange`, relay it to a replica of its pool with `relay`, and account for it."""
        ...


class Dispatcher:
    def __init__(
        self,
        table: EndpointTable,
        *,
        retries: int | None = None,
        budget: RetryBudget | None = None,
        gate: LoadGate | None = None,
    ) -> None:
        routing = table.routing
        self.gate = gate
        self.retries = routing.retries if retries is None else retries
        self.budget = budget or RetryBudget(routing.retry_budget, clock=table.clock)

    async def dispatch(self, exchange: Exchange, send: Send, relay: Relay, *, prepare: Prepare | None = None) -> None:
        """Relay `exchange` to a replica of its pool with `relay`; raises GatewayError when no answer can be had.

        `prepare` runs for each replica tried, before `relay`. A request for an on-demand model waits
        for its load first (loading.py).
        """
        pool = exchange.pool
        if pool.context_length is not None and exchange.path in GENERATION_PATHS:
            check_context(exchange.payload, exchange.prompt_size, pool.context_length)
        if self.gate is None or not pool.on_demand:
            await self._relay(exchange, send, relay, prepare)
            return
        async with self.gate.held(pool, exchange, send) as held_send:
            await self._relay(exchange, held_send, relay, prepare)

    async def _relay(self, exchange: Exchange, send: Send, relay: Relay, prepare: Prepare | None) -> None:
        self.budget.deposit()
        await self.resume(exchange, send, relay, prepare, tried=[])

    async def resume(
        self, exchange: Exchange, send: Send, relay: Relay, prepare: Prepare | None, *, tried: list[str]
    ) -> None:
        """Try the replicas of `exchange`'s pool not in `tried` until one answers (the callback data path,
        edge/lane.py, continues here after its first attempt failed)."""
        pool = exchange.pool
        request = RouteRequest(exchange.payload)
        watch_first = exchange.stream and pool.policy.watches_first_token and pool.routed
        while True:
            attempt = self.attempt(exchange, request, tried)
            relay_to = _FirstChunkWatch(send, pool, attempt) if watch_first else send
            try:
                if prepare is not None:
                    prepare(exchange, attempt.endpoint)
                await relay(
                    exchange, attempt.endpoint, relay_to
                )  # may refuse what this replica's engine cannot do (400)
            except OpenFilesExhausted:
                pool.abandon(attempt)  # the gateway's own shortage: no fault of the replica, none would fare better
                raise
            except GatewayError as error:
                self.failed(exchange, attempt, error)
                continue
            except BaseException:
                pool.abandon(attempt)  # cancelled: not the engine's doing, but its bookkeeping must end
                raise
            _finish(pool, attempt, exchange)
            return

    def attempt(self, exchange: Exchange, request: RouteRequest, tried: list[str]) -> Attempt:
        """The next replica to try `exchange` on (added to `tried`)."""
        try:
            attempt = exchange.pool.choose(request, exclude=tried)
        except GatewayError:
            if exchange.error is None:
                raise
            # The replicas left went away while the first ones failed: answer with that failure.
            raise exchange.error from None
        tried.append(attempt.endpoint.id)
        exchange.attempts += 1
        exchange.error = exchange.status = exchange.first_byte_at = None
        exchange.retryable = self._may_retry(exchange.pool, tried)
        return attempt

    def failed(self, exchange: Exchange, attempt: Attempt, error: GatewayError) -> None:
        """Account for `attempt` failing with `error` before the client got anything; raises `error` unless
        the request may be retried on another replica."""
        exchange.pool.finish(attempt, ok=error.status < 500)  # a 4xx is about the request, not the replica
        exchange.error = error
        if not (exchange.retryable and error.status >= 500 and self._spend(error)):
            raise error

    def succeeded(self, exchange: Exchange, attempt: Attempt) -> None:
        _finish(exchange.pool, attempt, exchange)

    def _spend(self, error: GatewayError) -> bool:
        """Whether the retry budget allows retrying after `error`. The budget keeps retries from piling onto
        replicas that fail under load; a request whose replica went away adds no work anywhere (that replica
        does none for it), so its retry is free: a dead node's requests all go elsewhere."""
        return isinstance(error, ReplicaGone) or self.budget.withdraw()

    def _may_retry(self, pool: Pool, tried: list[str]) -> bool:
        if len(pool.endpoints) <= len(tried) or len(tried) > self.retries or not self.budget.can_retry():
            return False
        return pool.untried(tried)


def _finish(pool: Pool, attempt: Attempt, exchange: Exchange) -> None:
    ok = exchange.error is None and (exchange.status is None or exchange.status < 500)
    pool.finish(attempt, ok=ok)


class _FirstChunkWatch:
    """A `send` that tells the pool when a stream's answer starts (the relay starts it with its first chunk)."""

    __slots__ = ("_attempt", "_pool", "_seen", "_send")

    def __init__(self, send: Send, pool: Pool, attempt: Attempt) -> None:
        self._send = send
        self._pool = pool
        self._attempt = attempt
        self._seen = False

    async def __call__(self, message: Message) -> None:
        if not self._seen:
            self._seen = True
            self._pool.first_token(self._attempt, self._pool.clock())
        await self._send(message)
