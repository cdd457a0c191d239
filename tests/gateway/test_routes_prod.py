"""Model aliases, /v1/embeddings, and SGLang's native /generate passed through to SGLang services."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.gateway.prod_engine import COMPLETION_TOKENS, PROMPT_TOKENS, ProdEngine, start_engine
from tests.gateway.prod_harness import engine_endpoint, ledger_rows, production_gateway

pytestmark = pytest.mark.anyio

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


async def test_alias_is_rewritten_to_the_served_name(tmp_path: Path) -> None:
    home = tmp_path / "home"
    async with production_gateway(home, {"aliases": {"gpt-4o-mini": "tiny"}}) as gw, gw.client() as client:
        models = [m["id"] for m in (await client.get("/v1/models")).json()["data"]]
        answer = await client.post("/v1/chat/completions", json=CHAT)
        direct = await client.post("/v1/chat/completions", json={**CHAT, "model": "tiny"})
    assert models == ["tiny", "gpt-4o-mini"]
    assert answer.status_code == 200 and direct.status_code == 200
    assert gw.engine.received[0] == {**CHAT, "model": "tiny"}
    assert [(r["model"], r["alias"]) for r in ledger_rows(home)] == [("tiny", "gpt-4o-mini"), ("tiny", None)]


async def test_embeddings_are_routed_like_the_others(tmp_path: Path) -> None:
    async with production_gateway(tmp_path / "home") as gw, gw.client() as client:
        answer = await client.post("/v1/embeddings", json={"model": "tiny", "input": ["a", "b"]})
        missing = await client.post("/v1/embeddings", json={"model": "tiny"})
    assert answer.status_code == 200 and answer.json()["data"][0]["embedding"] == [0.1, 0.2, 0.3]
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "input"


async def test_sglang_generate_passthrough(tmp_path: Path) -> None:
    home = tmp_path / "home"
    sglang = ProdEngine()
    async with production_gateway(home) as gw:
        runner, url = await start_engine(sglang)
        gw.table.upsert(engine_endpoint("sg", url, "sglang"))
        body = b'{"text": "The capital of France is",  "sampling_params": {"max_new_tokens": 3}}'
        async with gw.client() as client:
            whole = await client.post("/generate", content=body, headers={"content-type": "application/json"})
            streamed = await client.post("/generate", json={"text": "x", "stream": True, "model": "sg"})
            wrong_engine = await client.post("/generate", json={"text": "x", "model": "tiny"})
        await runner.cleanup()
    assert whole.status_code == 200 and whole.json()["meta_info"]["completion_tokens"] == COMPLETION_TOKENS
    assert streamed.content == sglang.streams[0]  # byte for byte
    assert wrong_engine.status_code == 400 and "SGLang" in wrong_engine.json()["error"]["message"]
    assert gw.engine.received == []  # nothing reached the vLLM-like engine
    rows = ledger_rows(home)
    assert [(r["route"], r["model"], r["prompt_tokens"], r["completion_tokens"]) for r in rows[:2]] == [
        ("/generate", "sg", PROMPT_TOKENS, COMPLETION_TOKENS),
        ("/generate", "sg", PROMPT_TOKENS, COMPLETION_TOKENS),
    ]


async def test_generate_without_sglang_service_is_400(tmp_path: Path) -> None:
    async with production_gateway(tmp_path / "home") as gw, gw.client() as client:
        response = await client.post("/generate", json={"text": "x"})
    assert response.status_code == 400 and "no SGLang service" in response.json()["error"]["message"]
