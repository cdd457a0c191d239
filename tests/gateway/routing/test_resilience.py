"""Failures on three simulator replicas: retries elsewhere, circuits that open and close, drains, streams cut short."""

from __future__ import annotations

import asyncio
import time

import pytest

from servestack.gateway import Upstream
from servestack.gateway.fleet.breaker import BreakerState
from servestack.sim import SimConfig
from tests.gateway.routing.cluster import start_cluster
from tests.gateway.routing.policy_helpers import FakeClock

pytestmark = pytest.mark.anyio

QUICK = SimConfig(prefill_rate=8000, decode_rate=200, time_scale=0.05)
SLOW_STREAM = SimConfig(prefill_rate=8000, decode_rate=10, time_scale=1.0)  # 10 tokens: about one second
HI = [{"role": "user", "content": "hello"}]
NO_PROBES = {"probe_interval": 3600.0}  # only requests find failures


async def test_a_request_refused_by_a_dead_replica_is_retried_on_another() -> None:
    async with start_cluster([QUICK] * 3, policy="round_robin", **NO_PROBES) as cluster:
        await cluster.sims[1].stop()  # the table still says ready
        answers = [await cluster.chat(HI) for _ in range(6)]
        streams = [await cluster.stream(HI) for _ in range(3)]
        assert [status for status, _ in answers] == [200] * 6
        assert "r1" not in {replica for _, replica in answers}
        for events, replica in streams:
            assert replica in ("r0", "r2") and not any("error" in e for e in events)
        assert cluster.endpoint(1).vitals.breaker.failures >= 2


async def test_engine_errors_are_retried_and_the_circuit_opens_then_closes() -> None:
    clock = FakeClock()
    async with start_cluster([QUICK] * 3, policy="round_robin", clock=clock, **NO_PROBES) as cluster:
        breaker = cluster.endpoint(1).vitals.breaker
        await cluster.set_faults(1, error_rate=1.0)
        for _ in range(12):
            status, replica = await cluster.chat(HI)
            assert status == 200 and replica != "r1"
            if breaker.state is BreakerState.OPEN:
                break
        assert breaker.state is BreakerState.OPEN
        sent = (await cluster.replica_state(1))["generation_requests"]
        assert [(await cluster.chat(HI))[0] for _ in range(6)] == [200] * 6
        assert (await cluster.replica_state(1))["generation_requests"] == sent  # open: no traffic at all
        await cluster.set_faults(1, error_rate=0.0)
        clock.advance(0.31)  # past open_seconds: the next request is the trial
        replicas = [(await cluster.chat(HI))[1] for _ in range(6)]
        assert "r1" in replicas
        assert breaker.state is BreakerState.CLOSED


async def test_retries_are_bounded_when_every_replica_fails() -> None:
    async with start_cluster([QUICK] * 3, policy="round_robin", retries=2, **NO_PROBES) as cluster:
        for i in range(3):
            await cluster.set_faults(i, error_rate=1.0)
        response = await cluster.client.post("/v1/chat/completions", json={"model": "sim", "messages": HI})
        assert response.status_code == 502  # the last engine's failure, in the gateway's terms (engine_errors.py)
        assert "simulated engine failure" in response.json()["error"]["message"]
        tried = [(await cluster.replica_state(i))["generation_requests"] for i in range(3)]
        assert tried == [1, 1, 1]


async def test_a_stream_cut_before_its_first_chunk_is_retried() -> None:
    async with start_cluster([SLOW_STREAM, QUICK], policy="round_robin", **NO_PROBES) as cluster:
        await cluster.set_faults(0, hang=True)  # accepts, never answers
        task = asyncio.create_task(cluster.stream(HI))
        while cluster.endpoint(0).in_flight == 0:
            await asyncio.sleep(0.01)
        await cluster.sims[0].stop()  # connection cut before any byte
        events, replica = await asyncio.wait_for(task, timeout=10)
        assert replica == "r1"
        assert events[-1]["choices"][0]["finish_reason"] is not None


async def test_a_hung_replica_is_passed_over_after_the_first_byte_timeout() -> None:
    upstream = Upstream(first_byte_timeout=0.3)
    async with start_cluster([QUICK] * 2, policy="round_robin", upstream=upstream, **NO_PROBES) as cluster:
        await cluster.set_faults(0, hang=True)  # accepts requests, never answers
        started = time.monotonic()
        answers = [await cluster.chat(HI) for _ in range(4)]
        streams = [await cluster.stream(HI) for _ in range(2)]
        assert [status for status, _ in answers] == [200] * 4 and {r for _, r in answers} == {"r1"}
        assert {replica for _, replica in streams} == {"r1"}
        assert time.monotonic() - started < 5  # not the 600 s idle timeout
        assert cluster.endpoint(0).vitals.breaker.failures >= 1

        await cluster.set_faults(1, hang=True)
        response = await cluster.client.post("/v1/chat/completions", json={"model": "sim", "messages": HI})
        assert response.status_code == 504
        assert "did not begin its answer in time (gateway.timeouts.first_byte)" in response.json()["error"]["message"]


async def test_a_replica_dying_mid_stream_ends_the_stream_with_an_error_event() -> None:
    async with start_cluster([SLOW_STREAM] * 3, policy="round_robin", **NO_PROBES) as cluster:
        body = {"model": "sim", "messages": HI, "max_tokens": 10, "stream": True}
        async with cluster.client.stream("POST", "/v1/chat/completions", json=body) as response:
            chunks = response.aiter_raw()
            first = await chunks.__anext__()
            serving = next(i for i in range(3) if cluster.endpoint(i).in_flight)
            await cluster.sims[serving].stop()
            rest = b"".join([c async for c in chunks])
        events = [e for e in (first + rest).split(b"\n\n") if e]
        assert b'"upstream_error"' in events[-1] and b"mid-stream" in events[-1]
        assert (await cluster.chat(HI))[0] == 200  # the pool goes on without it


async def test_drain_stops_new_requests_and_waits_for_the_ones_in_flight() -> None:
    async with start_cluster([SLOW_STREAM] * 3, policy="round_robin") as cluster:
        stream = asyncio.create_task(cluster.stream(HI, max_tokens=10))
        while not any(cluster.endpoint(i).in_flight for i in range(3)):
            await asyncio.sleep(0.01)
        busy = next(i for i in range(3) if cluster.endpoint(i).in_flight)
        drain = asyncio.create_task(cluster.table.drain(f"sim.{busy}", timeout=30))
        replicas = [(await cluster.chat(HI, max_tokens=1))[1] for _ in range(4)]
        assert f"r{busy}" not in replicas
        assert not drain.done()  # the stream is still going
        events, _ = await asyncio.wait_for(stream, timeout=30)
        assert await asyncio.wait_for(drain, timeout=5) is True
        assert events[-1]["choices"][0]["finish_reason"] == "length"
        assert not any("error" in e for e in events)


async def test_drain_gives_up_at_its_timeout() -> None:
    async with start_cluster([QUICK] * 2, policy="round_robin", **NO_PROBES) as cluster:
        await cluster.set_faults(0, hang=True)
        hung = asyncio.create_task(cluster.chat(HI))
        while cluster.endpoint(0).in_flight == 0:
            await asyncio.sleep(0.01)
        assert await cluster.table.drain("sim.0", timeout=0.2) is False
        assert await cluster.table.drain("sim.1", timeout=0.2) is True
        assert await cluster.table.drain("nothing", timeout=0.2) is True
        hung.cancel()
        await asyncio.gather(hung, return_exceptions=True)


async def test_active_probes_open_the_circuit_of_a_dead_replica_without_traffic() -> None:
    async with start_cluster([QUICK] * 2, policy="round_robin") as cluster:
        await cluster.sims[1].stop()
        breaker = cluster.endpoint(1).vitals.breaker
        for _ in range(100):
            if breaker.state is not BreakerState.CLOSED:
                break
            await asyncio.sleep(0.02)
        assert breaker.state is not BreakerState.CLOSED
        assert (await cluster.replica_state(0))["generation_requests"] == 0
