"""The load generator: a closed loop at a fixed concurrency, or an open loop of Poisson arrivals.

- `Concurrency(n)`: n workers; each takes a conversation, sends its turns one after the other
  (a turn waits for the previous answer), then takes the next conversation.
- `Rate(r)`: requests arrive at r per second on average, with exponential gaps; an arrival
  sends the next turn of a conversation whose previous answer is in, else starts a new one, so
  the request rate stays r whatever the dataset.

A run stops issuing requests after `requests` requests or `duration` seconds, whichever comes
first, and waits for those in flight. Progress is counted in a `Counters` object a display may
poll; nothing is rendered per request.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

import aiohttp

from servestack.bench.client import ConversationState, Sample, Target, perf_counter, send_request
from servestack.bench.workload import Conversation, Workload


@dataclass(frozen=True)
class Concurrency:
    clients: int

    @property
    def label(self) -> str:
        return f"concurrency {self.clients}"


@dataclass(frozen=True)
class Rate:
    per_second: float

    @property
    def label(self) -> str:
        return f"rate {self.per_second:g}/s"


Level = Concurrency | Rate


@dataclass(frozen=True)
class Limits:
    """When a run stops issuing requests: after `requests`, or after `duration` seconds."""

    requests: int | None = None
    duration: float | None = None

    def __post_init__(self) -> None:
        if self.requests is None and self.duration is None:
            raise ValueError("a run needs a request count or a duration")


@dataclass
class Counters:
    """Progress of the current run, for a display to poll."""

    issued: int = 0
    done: int = 0
    errors: int = 0


@dataclass
class RunResult:
    level: Level
    samples: list[Sample]
    started: float
    finished: float

    @property
    def wall_time(self) -> float:
        return self.finished - self.started


@dataclass
class _Budget:
    limits: Limits
    counters: Counters
    deadline: float = field(init=False)

    def __post_init__(self) -> None:
        duration = self.limits.duration
        self.deadline = float("inf") if duration is None else perf_counter() + duration

    def take(self) -> bool:
        """Claim one request, unless the run is over."""
        requests = self.limits.requests
        if requests is not None and self.counters.issued >= requests:
            return False
        if perf_counter() >= self.deadline:
            return False
        self.counters.issued += 1
        return True


class LoadGenerator:
    def __init__(self, session: aiohttp.ClientSession, target: Target, workload: Workload, *, seed: int = 0) -> None:
        self.session = session
        self.target = target
        self.workload = workload
        self.seed = seed
        self.counters = Counters()
        self._conversations: Iterator[Conversation] = workload.cycle()

    async def run(self, level: Level, limits: Limits) -> RunResult:
        """Run one load level to its limits; every request sent becomes a sample."""
        self.counters = Counters()
        budget = _Budget(limits, self.counters)
        samples: list[Sample] = []
        started = perf_counter()
        if isinstance(level, Concurrency):
            await asyncio.gather(*(self._worker(budget, samples) for _ in range(level.clients)))
        else:
            await self._arrivals(level.per_second, budget, samples)
        return RunResult(level, samples, started, perf_counter())

    async def _send(self, state: ConversationState, samples: list[Sample]) -> Sample:
        keep = state.keeps_answers
        sample = await send_request(self.session, self.target, state.next_body(self.target), keep_text=keep)
        samples.append(sample)
        self.counters.done += 1
        if sample.error is not None:
            self.counters.errors += 1
        state.answered(sample.text)
        return sample

    async def _worker(self, budget: _Budget, samples: list[Sample]) -> None:
        while budget.take():
            state = ConversationState(next(self._conversations))
            while True:
                sample = await self._send(state, samples)
                if sample.error is not None or state.finished or not budget.take():
                    break

    async def _arrivals(self, rate: float, budget: _Budget, samples: list[Sample]) -> None:
        rng = random.Random(self.seed)
        ready: deque[ConversationState] = deque()
        in_flight: set[asyncio.Task[None]] = set()
        next_at = perf_counter()
        while True:
            next_at += rng.expovariate(rate)
            delay = next_at - perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if not budget.take():
                break
            state = ready.popleft() if ready else ConversationState(next(self._conversations))
            task = asyncio.create_task(self._arrival(state, samples, ready))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        if in_flight:
            await asyncio.gather(*in_flight)

    async def _arrival(self, state: ConversationState, samples: list[Sample], ready: deque[ConversationState]) -> None:
        sample = await self._send(state, samples)
        if sample.error is None and not state.finished:
            ready.append(state)
