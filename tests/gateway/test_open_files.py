"""No descriptor left for the engine's connection: the gateway's own 503 (naming its limit, logged), not a
failure of the engine (its circuit breaker is not told, the request is not retried elsewhere); nor is a
health probe that could not connect for want of one.

The process's soft open-files limit is lowered, for one request, to the lowest free descriptor: the
client's connection and the gateway's side of it are open already, so only the engine connection fails.
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
from collections.abc import Iterator

import httpx
import pytest

from servestack.gateway import Endpoint
from servestack.gateway.fleet.breaker import BreakerState
from servestack.gateway.relay.monitor import Monitor
from tests.gateway.conftest import Harness

pytestmark = pytest.mark.anyio

CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}


@contextlib.contextmanager
def no_descriptor_left() -> Iterator[int]:
    """Within the block, opening any file fails with EMFILE; yields the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lowest_free = os.dup(0)
    os.close(lowest_free)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, hard))
    try:
        yield lowest_free
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def test_no_descriptor_for_the_engine_is_a_503_that_names_the_limit_and_spares_the_engine(
    gateway: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    endpoint = gateway.table.get("tiny.0")
    assert endpoint is not None
    limits = httpx.Limits(max_connections=1)
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10, limits=limits) as client:
        assert (await client.get("/health")).status_code == 200  # the client's connection is open from here on
        refused = []
        with caplog.at_level(logging.WARNING, "servestack.gateway"):
            for _ in range(endpoint.vitals.breaker.failure_threshold + 1):
                with no_descriptor_left() as limit:
                    refused.append(await client.post("/v1/chat/completions", json=CHAT))
        assert all(r.status_code == 503 for r in refused), [r.text for r in refused]
        error = refused[0].json()["error"]
        assert error["code"] == "too_many_open_files"
        assert f"its open-files limit is {limit:,}" in error["message"] and "ulimit" in error["message"]
        assert endpoint.vitals.breaker.state is BreakerState.CLOSED and endpoint.vitals.breaker.failures == 0
        assert gateway.engine.received == []  # nothing reached the engine
        assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200
    lines = [r for r in caplog.records if "out of file descriptors" in r.getMessage()]
    assert len(lines) == 1  # one line for the spell, not one per request


async def test_a_health_probe_without_a_descriptor_says_nothing_of_the_engine(gateway: Harness) -> None:
    engine_url = gateway.table.endpoints()[0].base_url
    probed = Endpoint("tiny.1", "tiny", ("tiny",), engine_url, ready=True, health_url=engine_url + "/health")
    monitor = Monitor(gateway.table)
    await monitor.start()
    try:
        with no_descriptor_left():
            healthy = await monitor.probe(probed)
    finally:
        await monitor.stop()
    assert not healthy
    assert probed.vitals.breaker.failures == 0
