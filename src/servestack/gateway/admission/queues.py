"""Per-model bounded queues: at most `max_concurrent` requests of a model upstream, `max_waiting` more
waiting in arrival order for at most `timeout` seconds (then 503 with a Retry-After from the mean time
a request holds its slot). A slot passes straight from a finished request to the next waiter.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Mapping

from servestack.errors import UpstreamUnavailable
from servestack.stack import QueueConfig


class ModelQueue:
    """At most `max_concurrent` requests upstream for one model; up to `max_waiting` wait in order."""

    def __init__(self, max_concurrent: int, max_waiting: int, timeout: float) -> None:
        self.max_concurrent = max_concurrent
        self.max_waiting = max_waiting
        self.timeout = timeout
        self.active = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._mean_seconds = 1.0  # moving average of time held, for Retry-After

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def acquire(self, model: str) -> None:
        if self.active < self.max_concurrent and not self._waiters:
            self.active += 1
            return
        if len(self._waiters) >= self.max_waiting:
            raise UpstreamUnavailable(
                f"The queue for model '{model}' is full ({self.max_waiting} waiting)", retry_after=self._retry_after()
            )
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter), self.timeout)
        except BaseException as exc:  # the wait timed out, or the client went away
            if waiter.done() and not waiter.cancelled():
                self.release(0.0)  # the slot was handed over just as we gave up: pass it on
            else:
                waiter.cancel()
                self._waiters.remove(waiter)
            if isinstance(exc, TimeoutError):
                raise UpstreamUnavailable(
                    f"Model '{model}' is busy: no turn within {self.timeout:g}s", retry_after=self._retry_after()
                ) from None
            raise

    def release(self, held_seconds: float) -> None:
        if held_seconds:
            self._mean_seconds += (held_seconds - self._mean_seconds) * 0.1
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes straight to the next waiter
                return
        self.active -= 1

    def _retry_after(self) -> float:
        per_slot = self._mean_seconds * (len(self._waiters) + 1) / self.max_concurrent
        return float(max(1, math.ceil(per_slot)))


class ModelQueues:
    """One `ModelQueue` per model, made on first use from the default or the model's own settings."""

    def __init__(
        self,
        default: QueueConfig | None,
        per_model: Mapping[str, QueueConfig],
    ) -> None:
        self.default = default
        self.per_model = dict(per_model)
        self._queues: dict[str, ModelQueue] = {}

    def get(self, model: str) -> ModelQueue | None:
        queue = self._queues.get(model)
        if queue is not None:
            return queue
        config = self.per_model.get(model, self.default)
        if config is None:
            return None
        queue = self._queues[model] = ModelQueue(config.max_concurrent, config.max_waiting, config.timeout)
        return queue

    def items(self) -> list[tuple[str, ModelQueue]]:
        return list(self._queues.items())
