"""The first-byte deadline: how long a request may wait for an engine's answer to begin.

`gateway.timeouts.first_byte` is `auto` by default: a budget scaled to the request,

    30 s + 10 ms per character of prompt + (whole answers only) 250 ms per token it may generate

where the tokens it may generate are its `max_tokens` (or `max_completion_tokens`, SGLang's
`max_new_tokens`), else what the context leaves after the prompt, else 4,096. A stream's answer
begins with its first chunk; a whole answer arrives at once, so its budget includes the generation.
An automatic deadline is enforced only while the replica sends nothing: when it comes and the replica
has sent bytes to any request since it was set, it is set again for the same length, so a request
queued inside a busy engine is not timed out — a wedged engine, which sends nothing to anyone, is.
A number is a fixed deadline, enforced as given; `0` switches the deadline off. Either way the
connection's idle timeout (`gateway.timeouts.idle`) still bounds the wait.

A deadline that comes raises TimeoutError out of its `async with` block (which the relay answers as
504, or retries on another replica). The monitor can also end it early: a replica whose health probe
times out while it sends nothing is stalled, and the requests waiting on it that could go to another
replica (`retryable`) expire at once (monitor.py).

Per request this is a small record in a set on the endpoint's vitals: no timer, no task.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Literal

from servestack.gateway.relay.prompt import GENERATION_PATHS, PromptSize, requested_tokens

if TYPE_CHECKING:
    from servestack.gateway.fleet.endpoint import Endpoint
    from servestack.gateway.relay.exchange import Exchange

BASE_SECONDS = 30.0
SECONDS_PER_PROMPT_CHAR = 0.01  # ~25 tokens/s of prefill: slower than a 7B model on a laptop's CPU
SECONDS_PER_OUTPUT_TOKEN = 0.25  # 4 tokens/s of decoding
DEFAULT_OUTPUT_TOKENS = 4096  # when neither the request nor the plan says
LATE = "did not begin its answer in time (gateway.timeouts.first_byte)"


def auto_budget(exchange: Exchange, endpoint: Endpoint) -> float:
    """Seconds the automatic deadline gives `exchange` on `endpoint` (the formula above)."""
    size = exchange.prompt_size
    seconds = BASE_SECONDS + SECONDS_PER_PROMPT_CHAR * (size.chars + size.token_ids)
    if not exchange.stream and exchange.path in GENERATION_PATHS:
        seconds += SECONDS_PER_OUTPUT_TOKEN * _output_tokens(exchange, size, endpoint.context_length)
    return seconds


def _output_tokens(exchange: Exchange, size: PromptSize, context_length: int | None) -> int:
    asked = requested_tokens(exchange.payload)
    if context_length is None:
        return DEFAULT_OUTPUT_TOKENS if asked is None else asked
    room = max(0, context_length - size.min_tokens)
    return room if asked is None else min(asked, room)


class FirstByteDeadline:
    """`async with` around the wait for an answer to begin; `started()` once it has.

    No timer per request: the deadline registers with the endpoint's vitals, and the monitor's sweep
    (`check`, every second, or every quarter of a fixed deadline) ends those that are due. The
    automatic budget is only worked out once a wait has outlasted the least any budget can be.
    """

    __slots__ = (
        "_cancelling", "_on_expire", "_task", "endpoint", "exchange", "fixed", "reason", "retryable", "seen", "since",
    )  # fmt: skip

    def __init__(self, exchange: Exchange, endpoint: Endpoint, fixed: float | None, *, retryable: bool) -> None:
        self.exchange = exchange
        self.endpoint = endpoint
        self.fixed = fixed  # seconds, enforced as given; None: the automatic budget, set again while the replica sends
        self.retryable = retryable  # another replica could take the request: a stall expires it at once
        self.reason: str | None = None  # why it expired; None while it has not
        self.since = 0.0
        self.seen = 0
        self._on_expire: Callable[[], object] | None = None

    async def __aenter__(self) -> FirstByteDeadline:
        task = asyncio.current_task()
        assert task is not None
        self._task = task
        self._cancelling = task.cancelling()
        self.arm(task.get_loop().time(), task.cancel)
        return self

    def arm(self, now: float, on_expire: Callable[[], object]) -> None:
        """Start watching at `now` (loop time); `on_expire` is called once if the deadline comes (the
        `async with` form cancels its task; the callback data path, edge/lane.py, ends its call)."""
        vitals = self.endpoint.vitals
        self._on_expire = on_expire
        self.since = now
        self.seen = vitals.progress
        vitals.waiting.add(self)

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.started()
        if self.reason is not None and self._task.uncancel() <= self._cancelling and kind is asyncio.CancelledError:
            raise TimeoutError(self.reason)

    def started(self) -> None:
        """The answer began: the deadline no longer applies."""
        self.endpoint.vitals.waiting.discard(self)
        # Its caller (a task, a lane call) holds it: keeping the callback back to the caller would make a
        # reference cycle of every request, which only the garbage collector could free.
        self._on_expire = None

    def check(self, now: float) -> None:
        """Expire the deadline if it is due at `now` (loop time); an automatic one waits on while the replica sends."""
        waited = now - self.since
        if waited < (BASE_SECONDS if self.fixed is None else self.fixed):
            return
        if self.fixed is not None:
            self.expire(LATE)
            return
        if waited < auto_budget(self.exchange, self.endpoint):
            return
        progress = self.endpoint.vitals.progress
        if progress != self.seen:  # it answered others meanwhile: a queue, not a wedge
            self.since, self.seen = now, progress
            return
        self.expire(LATE)

    def expire(self, reason: str) -> None:
        """End the wait now: the request's task is cancelled and the block raises TimeoutError."""
        on_expire = self._on_expire
        if self.reason is None and self in self.endpoint.vitals.waiting and on_expire is not None:
            self.reason = reason
            self.started()
            on_expire()


def first_byte_deadline(timeout: float | Literal["auto"], exchange: Exchange, endpoint: Endpoint) -> Deadline:
    """Bounds the wait for `exchange`'s answer from `endpoint` to begin (`async with`; `started()` once it has):
    `timeout` is "auto" (scaled to the request), seconds, or 0 for none (`gateway.timeouts.first_byte`)."""
    if timeout == "auto":
        return FirstByteDeadline(exchange, endpoint, None, retryable=exchange.retryable)
    if not timeout:
        return NO_DEADLINE
    return FirstByteDeadline(exchange, endpoint, timeout, retryable=exchange.retryable)


class _NoDeadline:
    """The deadline when `first_byte` is 0: nothing to arm or cancel."""

    reason = None

    async def __aenter__(self) -> _NoDeadline:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def arm(self, now: float, on_expire: Callable[[], object]) -> None:
        pass

    def started(self) -> None:
        pass


NO_DEADLINE = _NoDeadline()
Deadline = FirstByteDeadline | _NoDeadline
