"""Waiting for an engine to be really ready, by the engine's own readiness semantics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from servestack.engines import Engine, ProbeResult, Readiness
from servestack.errors import EngineError
from servestack.supervisor.history import describe_exit
from servestack.supervisor.process import START_HEADER, tail_lines

if TYPE_CHECKING:
    import aiohttp

    from servestack.supervisor.launcher import EngineHandle

PROBE_TIMEOUT = 5.0
# Probe often while an engine is young: a small model is ready in about a second, and a backoff
# step that overshoots it shows up whole in the time to first token. Slow loaders back off.
FAST_INTERVAL, FAST_PHASE, MAX_INTERVAL = 0.05, 10.0, 1.0
LOG_TAIL_LINES = 20


async def probe(session: aiohttp.ClientSession, url: str) -> ProbeResult:
    """GET `url` once; a refused or reset connection is a result (status None), not an error."""
    import aiohttp  # imported on first use: `up` spawns its engines before paying for it

    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=PROBE_TIMEOUT)) as resp:
            return ProbeResult(status=resp.status, body=await resp.read())
    except (aiohttp.ClientError, TimeoutError, OSError):
        return ProbeResult(status=None)


async def wait_ready(
    process: EngineHandle,
    engine: Engine,
    url: str,
    *,
    timeout: float,
    session: aiohttp.ClientSession,
    on_tick: Callable[[float], None] | None = None,
) -> float:
    """Block until the engine answers ready; return the seconds it took.

    Raises EngineError, with the exit code and the last lines of the log, when the process exits,
    the engine reports a failure, or `timeout` passes.
    """
    started = time.monotonic()
    interval = FAST_INTERVAL
    while True:
        elapsed = time.monotonic() - started
        if ended(process):
            raise engine_died(engine, process)
        result = await probe(session, url)
        if ended(process):
            raise engine_died(engine, process)
        readiness = engine.readiness(result)
        if readiness is Readiness.READY:
            return time.monotonic() - started
        if readiness is Readiness.FAILED:
            raise EngineError(
                f"{engine.display_name} reported a failure at {url} (HTTP {result.status})",
                log_tail=engine_log_tail(engine, process),
            )
        if elapsed > timeout:
            raise EngineError(
                f"{engine.display_name} was not ready after {timeout:.0f}s",
                fix="raise SERVESTACK_READY_TIMEOUT if the model is large, or read the log",
                log_tail=engine_log_tail(engine, process),
            )
        if on_tick:
            on_tick(elapsed)
        await asyncio.sleep(interval)
        interval = FAST_INTERVAL if elapsed < FAST_PHASE else min(interval * 1.5, MAX_INTERVAL)


def ended(process: EngineHandle) -> bool:
    """The engine exited, or was lost with its node."""
    return process.returncode is not None or process.lost is not None


def engine_died(engine: Engine, process: EngineHandle) -> EngineError:
    if process.lost:
        what = f"{engine.display_name} was lost: {process.lost}"
    else:
        what = f"{engine.display_name} exited with {describe_exit(process.returncode)[0]}"
    return EngineError(
        what,
        fix=f"full log: {process.log_path}",
        log_tail=engine_log_tail(engine, process),
    )


def engine_log_tail(engine: Engine, process: EngineHandle, count: int = LOG_TAIL_LINES) -> list[str]:
    """The last lines this start of the engine wrote: no earlier start's, no blank ones, none of its probes'."""
    lines = tail_lines(process.log_path, count, hide=engine.probe_log_lines)
    starts = [i for i, line in enumerate(lines) if line.startswith(START_HEADER)]
    this_start = lines[starts[-1] + 1 :] if starts else lines
    return [line for line in this_start if line.strip()]
