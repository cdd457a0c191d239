"""Chaos: three simulated replicas behind the gateway, one SIGKILLed every couple of seconds under load.

What a user must see: no request hangs, non-streaming success ≥ 99.5% (failures before the first byte
are retried on another replica), every failure is a well-formed OpenAI error (JSON, or a last SSE error
event for a stream cut mid-way), and killed replicas are restarted by the supervisor and rejoin the pool.
Run with `-s` to see the figures.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import free_port, run_cli
from tests.traffic import Tally, judge

pytestmark = pytest.mark.e2e

REQUESTS = 3000
STREAM_EVERY = 10  # one request in ten streams
CONCURRENCY = 16
KILL_EVERY = 2.0
REQUEST_TIMEOUT = 30.0  # a request still open after this counts as a hang

STACK = """
version: 1
services:
  chat:
    engine: sim
    model: sim
    replicas: 3
    restart: always
    args: ["--prefill-rate", "200000", "--decode-rate", "100", "--max-running", "64"]  # ~80 ms a request
"""


async def one_request(session: aiohttp.ClientSession, url: str, i: int, tally: Tally) -> None:
    stream = i % STREAM_EVERY == 0
    body = {"model": "chat", "messages": [{"role": "user", "content": f"question {i}"}], "max_tokens": 8}
    if stream:
        body["stream"] = True
    started = time.monotonic()
    try:
        async with asyncio.timeout(REQUEST_TIMEOUT), session.post(url, json=body) as resp:
            raw = await resp.read()
    except TimeoutError:
        tally.hangs += 1
        return
    except aiohttp.ClientError as exc:
        tally.failures[f"client {type(exc).__name__}"] += 1
        tally.malformed.append(f"connection error {exc}")
        return
    finally:
        tally.max_latency = max(tally.max_latency, time.monotonic() - started)
    judge(resp.status, raw, stream, tally)


async def load(url: str, tally: Tally) -> None:
    queue = iter(range(REQUESTS))
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            for i in queue:
                await one_request(session, url, i, tally)

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))


def status() -> dict:
    return json.loads(run_cli("status", "--json").stdout)


async def killer(stop: asyncio.Event, kills: list[int]) -> None:
    rng = random.Random(1)
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), KILL_EVERY)
            return
        except TimeoutError:
            pass
        alive = [r for r in (await asyncio.to_thread(status))["services"] if r["status"] == "ready" and r["pgid"]]
        if alive:
            victim = rng.choice(alive)
            os.killpg(victim["pgid"], signal.SIGKILL)
            kills.append(victim["replica"])


def wait_all_ready(timeout: float = 60) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        replicas = status()["services"]
        if len(replicas) == 3 and all(r["status"] == "ready" for r in replicas):
            return replicas
        time.sleep(0.3)
    pytest.fail(f"replicas not all ready: {status()}")


def test_sigkilled_replicas_lose_no_requests_and_rejoin(home: Path, tmp_path: Path) -> None:
    stack = tmp_path / "stack.yaml"
    stack.write_text(STACK)
    port = free_port()
    env = {**os.environ, "SERVESTACK_RESTART_BACKOFF": "0.2", "SERVESTACK_CRASH_LOOP_FAILURES": "100"}
    log = (tmp_path / "up.log").open("w")
    up = subprocess.Popen(
        [sys.executable, "-m", "servestack", "up", "-f", str(stack), "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    try:
        wait_all_ready()
        tally, kills = Tally(), []

        async def run() -> float:
            stop = asyncio.Event()
            chaos = asyncio.create_task(killer(stop, kills))
            began = time.monotonic()
            await load(f"http://127.0.0.1:{port}/v1/chat/completions", tally)
            stop.set()
            await chaos
            return time.monotonic() - began

        seconds = asyncio.run(run())
        replicas = wait_all_ready()
        non_stream = REQUESTS - REQUESTS // STREAM_EVERY
        print(
            f"\nchaos: {REQUESTS} requests in {seconds:.1f}s, {len(kills)} SIGKILLs ({Counter(kills)}); "
            f"non-streaming ok {tally.ok}/{non_stream} ({tally.ok / non_stream:.2%}), streams ok "
            f"{tally.streams_ok}/{REQUESTS // STREAM_EVERY}; failures {dict(tally.failures)}; "
            f"malformed {len(tally.malformed)}; hangs {tally.hangs}; max latency {tally.max_latency:.2f}s; "
            f"restarts {[r['restarts'] for r in replicas]}"
        )
        assert len(kills) >= 3
        assert tally.hangs == 0
        assert tally.malformed == []
        assert tally.ok / non_stream >= 0.995
        assert sum(r["restarts"] for r in replicas) >= len(kills)
        # Every restarted replica is back in the pool: a final burst reaches all three.
        rejoin = Tally()

        async def burst() -> None:
            async with aiohttp.ClientSession() as session:
                url = f"http://127.0.0.1:{port}/v1/chat/completions"
                await asyncio.gather(*(one_request(session, url, i * STREAM_EVERY + 1, rejoin) for i in range(60)))

        asyncio.run(burst())
        assert rejoin.ok == 60 and len(rejoin.fingerprints) == 3
    finally:
        up.send_signal(signal.SIGINT)
        up.wait(timeout=60)
        log.close()
