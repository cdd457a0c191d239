"""The usage ledger: one row per request with tokens (streams included), batched writes, and
rows that survive a kill -9 of the gateway."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from servestack.asgi import sse_done_in
from servestack.gateway.admission.keys import KeyStore
from servestack.gateway.fleet.pool import Pool
from servestack.gateway.fleet.routing import RoundRobin
from servestack.gateway.relay.exchange import Exchange
from servestack.settings import Settings
from tests.conftest import run_cli
from tests.gateway.prod_engine import COMPLETION_TOKENS, PROMPT_TOKENS, USAGE, chat_stream
from tests.gateway.prod_harness import ledger_rows, production_gateway

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).parents[2]
CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}


async def test_one_row_per_request_with_tokens_from_answers_and_streams(tmp_path: Path) -> None:
    home = tmp_path / "home"
    async with production_gateway(home, {"auth": {"enabled": True}}) as gw:
        secret = await gw.create_key("alice")
        async with gw.client(secret) as client:
            await client.post("/v1/chat/completions", json=CHAT)
            plain = await client.post("/v1/chat/completions", json={**CHAT, "stream": True})
            asked = await client.post(
                "/v1/chat/completions", json={**CHAT, "stream": True, "stream_options": {"include_usage": True}}
            )
            await client.post("/v1/completions", json={"model": "tiny", "prompt": "x", "stream": True})
            await client.post("/v1/embeddings", json={"model": "tiny", "input": "x"})
            await client.post("/v1/chat/completions", json={**CHAT, "model": "nope"})
        batches = gw.gateway.pipeline.ledger.batches  # type: ignore[union-attr]
    # The client that did not ask for usage gets the stream without the usage chunk the gateway asked for,
    assert plain.content == b"".join(chat_stream("tiny", with_usage=False))
    assert gw.engine.received[1]["stream_options"] == {"include_usage": True}
    # and one that asked gets it, its request forwarded untouched.
    assert json.dumps(USAGE, separators=(",", ":")).encode() in asked.content
    rows = ledger_rows(home)
    assert [(r["route"], r["stream"], r["status"], r["prompt_tokens"], r["completion_tokens"]) for r in rows] == [
        ("/v1/chat/completions", 0, 200, PROMPT_TOKENS, COMPLETION_TOKENS),
        ("/v1/chat/completions", 1, 200, PROMPT_TOKENS, COMPLETION_TOKENS),
        ("/v1/chat/completions", 1, 200, PROMPT_TOKENS, COMPLETION_TOKENS),
        ("/v1/completions", 1, 200, PROMPT_TOKENS, COMPLETION_TOKENS),
        ("/v1/embeddings", 0, 200, 4, None),
        ("/v1/chat/completions", 0, 404, None, None),
    ]
    assert {r["key_name"] for r in rows} == {"alice"} and all(r["estimated"] == 0 for r in rows)
    assert all(r["replica"] == "tiny.0" and r["ttft"] and r["duration"] for r in rows[:5])
    assert batches < len(rows)  # rows were committed in batches


async def test_streams_without_engine_usage_are_estimated(tmp_path: Path) -> None:
    home = tmp_path / "home"
    async with (
        production_gateway(home, engine_name="llamacpp") as gw,
        gw.client() as client,
    ):  # llama-cpp-python: no stream_options
        await client.post("/v1/chat/completions", json={**CHAT, "stream": True})
    assert "stream_options" not in gw.engine.received[0]
    [row] = ledger_rows(home)
    assert row["estimated"] == 1 and row["completion_tokens"] == COMPLETION_TOKENS and row["prompt_tokens"] == 1


def start_gateway(home: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.gateway.gateway_main", str(home)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("ready "), line
    return proc, line.split()[1]


async def test_ledger_survives_kill_9(home: Path) -> None:
    store = KeyStore(Settings(home=home).keys_db)
    _, secret = store.create("survivor")
    store.close()
    proc, url = await asyncio.to_thread(start_gateway, home)
    completed = 30
    try:
        async with httpx.AsyncClient(base_url=url, headers={"authorization": f"Bearer {secret}"}) as client:
            for i in range(completed):
                response = await client.post("/v1/chat/completions", json={**CHAT, "stream": i % 2 == 0})
                assert response.status_code == 200
            # Two requests still in flight when the gateway dies: not completed, not in the ledger.
            slow = {**CHAT, "messages": [{"role": "user", "content": "slow"}]}
            in_flight = [asyncio.ensure_future(client.post("/v1/chat/completions", json=slow)) for _ in range(2)]
            await asyncio.sleep(0.3)  # > flush_interval (0.1 s): the bound on how late a row is committed
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            for request in in_flight:
                with pytest.raises(httpx.TransportError):
                    await request
    finally:
        if proc.poll() is None:
            proc.kill()
    assert len(ledger_rows(home)) == completed

    proc, url = await asyncio.to_thread(start_gateway, home)  # a restart reopens (and recovers) the WAL
    try:
        async with httpx.AsyncClient(base_url=url, headers={"authorization": f"Bearer {secret}"}) as client:
            assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)  # a clean stop writes what is queued
        proc.wait(timeout=10)
    rows = ledger_rows(home)
    assert len(rows) == completed + 1 and {r["key_name"] for r in rows} == {"survivor"}
    usage = run_cli("usage", "--json", "--by", "key")
    assert usage.returncode == 0, usage.stderr
    [totals] = json.loads(usage.stdout)
    assert totals["requests"] == completed + 1
    assert totals["completion_tokens"] == (completed + 1) * COMPLETION_TOKENS


STREAM = b'data: {"choices":[{"delta":{"content":"[x]"}}]}\n\n'


@pytest.mark.parametrize("done", [b"data: [DONE]\n\n", b"data:[DONE]\n\n"])
def test_the_end_of_a_stream_is_seen_wherever_the_engines_writes_split_it(done: bytes) -> None:
    stream = STREAM + done
    for at in range(1, len(stream)):
        assert sse_done_in(stream[:at], stream[at:]), at
    assert not any(sse_done_in(b"", stream[:at]) for at in range(len(stream) - 2))  # cut before the `]`


@pytest.mark.parametrize("at", [0, 36, 39, 40])
def test_a_content_that_only_looks_like_the_end_of_a_stream_is_not_it(at: int) -> None:
    stream = b'data: {"choices":[{"delta":{"content":"data: [DONE] is how it ends"}}]}\n\n'
    assert not sse_done_in(stream[:at], stream[at:])


def test_an_exchange_knows_its_streams_end_went_out_from_the_last_two_parts_relayed() -> None:
    pool = Pool("m", RoundRobin())
    exchange = Exchange(path="/v1/chat/completions", pool=pool, stream=True, body=b"", payload={}, headers=[])
    for part in (STREAM, b"data: [DO", b"NE]\n\n"):
        assert not exchange.done_sent
        exchange.relayed(part)
    assert exchange.done_sent
