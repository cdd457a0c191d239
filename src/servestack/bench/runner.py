"""Running a whole benchmark: resolve the target, warm up, run every load level, summarise each.

The runner owns the event-loop side (one aiohttp session for the whole sweep); what to show while
it runs is up to a `Monitor`, which is polled a few times a second rather than called per request.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Protocol

import aiohttp
import orjson

from servestack.bench.client import Target, make_session, perf_counter
from servestack.bench.loadgen import Concurrency, Counters, Level, Limits, LoadGenerator
from servestack.bench.stats import Slo, Summary, summarize
from servestack.bench.workload import Workload
from servestack.errors import BenchError

TICK_SECONDS = 0.1
ENDPOINTS = {"chat": "/chat/completions", "completions": "/completions"}


class Monitor(Protocol):
    def level_started(self, level: Level, limits: Limits) -> None: ...
    def tick(self, counters: Counters, elapsed: float) -> None: ...
    def level_finished(self, summary: Summary) -> None: ...


class QuietMonitor:
    def level_started(self, level: Level, limits: Limits) -> None:
        pass

    def tick(self, counters: Counters, elapsed: float) -> None:
        pass

    def level_finished(self, summary: Summary) -> None:
        pass


def api_base(url: str) -> str:
    """The `…/v1` base of an OpenAI-compatible URL given as a host, a base or a full endpoint."""
    url = url.rstrip("/")
    for suffix in ("/chat/completions", "/completions", "/models"):
        if url.endswith(suffix):
            url = url.removesuffix(suffix)
            break
    if "://" not in url:
        url = "http://" + url
    return url if url.endswith("/v1") else url + "/v1"


async def served_models(session: aiohttp.ClientSession, base: str) -> list[str] | None:
    """The models the server lists at `GET /v1/models` (None when it does not list them).

    Raises BenchError when the server cannot be reached or refuses the request for want of a key, so a
    benchmark does not send its whole load to be refused.
    """
    try:
        async with session.get(base + "/models") as resp:
            body = await resp.read()
            status = resp.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise BenchError(f"cannot reach {base}: {exc}", fix="is the server running? check the URL") from None
    if status in (401, 403):
        said = " (the key was refused)" if session.headers.get("Authorization") else ""
        raise BenchError(
            f"{base} needs an API key: GET {base}/models answered HTTP {status}{said}",
            fix="pass --api-key KEY (`servestack keys create --name bench` makes one)",
        )
    try:
        return [str(m["id"]) for m in orjson.loads(body)["data"]] if status == 200 else None
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None


async def detect_model(session: aiohttp.ClientSession, base: str) -> str:
    """The first model the server lists at `GET /v1/models`."""
    models = await served_models(session, base)
    if models is None:
        raise BenchError(f"GET {base}/models did not list models", fix="name the model with --model")
    if not models:
        raise BenchError(f"{base} serves no model", fix="name the model with --model")
    return models[0]


async def run_levels(
    target: Target,
    workload: Workload,
    levels: Sequence[Level],
    limits: Limits,
    *,
    slo: Slo,
    seed: int = 0,
    warmup: int = 0,
    timeout: float = 600.0,
    monitor: Monitor | None = None,
) -> list[Summary]:
    """Run each level in turn on one connection pool; `warmup` requests before the first are not counted."""
    monitor = monitor or QuietMonitor()
    summaries = []
    async with make_session(target, timeout) as session:
        generator = LoadGenerator(session, target, workload, seed=seed)
        if warmup:
            clients = levels[0].clients if isinstance(levels[0], Concurrency) else 8
            await generator.run(Concurrency(min(clients, warmup)), Limits(requests=warmup))
        for level in levels:
            monitor.level_started(level, limits)
            ticker = asyncio.create_task(_tick(generator, monitor))
            try:
                result = await generator.run(level, limits)
            finally:
                ticker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await ticker
            summary = summarize(result, slo)
            monitor.level_finished(summary)
            summaries.append(summary)
    return summaries


async def _tick(generator: LoadGenerator, monitor: Monitor) -> None:
    started = perf_counter()
    while True:
        monitor.tick(generator.counters, perf_counter() - started)
        await asyncio.sleep(TICK_SECONDS)
