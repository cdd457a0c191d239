"""The monitor's background watch in a large fleet: probes spread over turns, capped per second, and
skipped for replicas whose answers already show they are alive; idle engines scraped less often."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from aiohttp import web

from servestack.gateway import Endpoint, EndpointTable
from servestack.gateway.fleet.turns import CHECKS_PER_SECOND
from servestack.gateway.relay.monitor import Monitor

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def health_server() -> AsyncIterator[tuple[str, Counter[str]]]:
    """A /health and a /metrics (of an idle engine) that count the checks of each endpoint (named in the query)."""
    hits: Counter[str] = Counter()

    async def check(request: web.Request) -> web.Response:
        hits[request.query["e"]] += 1
        return web.Response(text="ok\n" if request.path == "/health" else "# nothing running\n")

    app = web.Application()
    app.router.add_get("/health", check)
    app.router.add_get("/metrics", check)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}", hits
    finally:
        await runner.cleanup()


def watched_fleet(url: str, size: int, *, scraped: bool = False) -> EndpointTable:
    table = EndpointTable()
    for i in range(size):
        health, metrics = (None, f"{url}/metrics?e=r.{i}") if scraped else (f"{url}/health?e=r.{i}", None)
        table.upsert(Endpoint(f"r.{i}", "r", ("m",), url, ready=True, health_url=health, metrics_url=metrics))
    return table


@asynccontextmanager
async def watching(
    table: EndpointTable, probe_interval: float, scrape_interval: float = 3600.0
) -> AsyncIterator[Monitor]:
    monitor = Monitor(table, probe_interval=probe_interval, scrape_interval=scrape_interval)
    await monitor.start()
    try:
        yield
    finally:
        await monitor.stop()


async def test_a_large_fleet_is_probed_in_turns_at_a_capped_rate() -> None:
    size = 96  # at 48 probes a second: one turn each every ~2 s, however short the configured interval
    async with health_server() as (url, hits), watching(watched_fleet(url, size), probe_interval=0.05):
        for _ in range(160):
            if len(hits) == size:
                break
            await asyncio.sleep(0.05)
        seen_after = sum(hits.values())
        await asyncio.sleep(1.0)
        total = sum(hits.values())
    assert len(hits) == size  # every replica had its turn
    assert seen_after <= 2 * size  # before: every replica every 0.05 s, ~40 rounds by then
    assert total - seen_after <= 2 * CHECKS_PER_SECOND  # about 48 in that second, spread rather than a burst


async def test_a_replica_that_answers_requests_is_not_probed_as_well() -> None:
    async with health_server() as (url, hits):
        table = watched_fleet(url, 2)
        busy = table.get("r.1")
        assert busy is not None

        async def answering() -> None:
            while True:
                busy.vitals.progress += 1  # what relayed answers and chunks do
                await asyncio.sleep(0.01)

        task = asyncio.create_task(answering())
        try:
            async with watching(table, probe_interval=0.05):
                await asyncio.sleep(1.0)
        finally:
            task.cancel()
    assert hits["r.0"] >= 5  # the idle one is probed every ~0.05 s
    assert hits["r.1"] == 0  # its answers say it is alive


async def test_an_idle_engine_is_scraped_less_often_until_requests_reach_it() -> None:
    async with health_server() as (url, hits):
        table = watched_fleet(url, 2, scraped=True)
        async with watching(table, probe_interval=3600.0, scrape_interval=0.05):
            await asyncio.sleep(1.0)
            resting = dict(hits)
            busy = table.get("r.1")
            assert busy is not None
            busy.in_flight = 1  # a request of this gateway is there now
            await asyncio.sleep(1.0)
            busy.in_flight = 0
    assert 1 <= resting["r.0"] <= 10 and 1 <= resting["r.1"] <= 10  # every ~0.2 s; before: every 0.05 s
    assert hits["r.1"] - resting["r.1"] >= 2 * (hits["r.0"] - resting["r.0"])  # back to every 0.05 s
