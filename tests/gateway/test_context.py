"""A prompt that cannot fit the model's context is refused before it reaches the engine (400
`context_length_exceeded`), on every generation route; a prompt that might fit is the engine's to judge."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from servestack.gateway import Endpoint
from servestack.gateway.relay.prompt import MAX_CHARS_PER_TOKEN, PromptSize, measure_prompt
from tests.gateway.prod_harness import production_gateway

pytestmark = pytest.mark.anyio

CONTEXT = 2048


def test_the_prompt_is_measured_where_each_api_puts_it() -> None:
    chat = {"messages": [{"role": "system", "content": "ab"}, {"role": "user", "content": [{"text": "cde"}, {}]}]}
    assert measure_prompt(chat) == PromptSize(chars=5)
    assert measure_prompt({"prompt": "abcd"}) == PromptSize(chars=4)
    assert measure_prompt({"prompt": ["ab", "abcdef"]}) == PromptSize(chars=6)  # each prompt of a batch on its own
    assert measure_prompt({"prompt": [1, 2, 3]}) == PromptSize(token_ids=3)
    assert measure_prompt({"input_ids": [[1, 2], [3, 4, 5]]}) == PromptSize(token_ids=3)
    assert measure_prompt({"text": "xyz"}) == PromptSize(chars=3)
    assert PromptSize(chars=MAX_CHARS_PER_TOKEN + 1, token_ids=2).min_tokens == 4


async def test_an_absurd_prompt_is_refused_at_once_on_every_generation_route(tmp_path: Path) -> None:
    huge = "word " * 6_000_000  # 30 MB: at least 117,188 tokens
    async with production_gateway(tmp_path / "home") as gw, gw.client() as client:
        gw.table.upsert(Endpoint("tiny.0", "tiny", ("tiny",), gw.engine_url, ready=True, context_length=CONTEXT))
        began = time.monotonic()
        chat = await client.post(
            "/v1/chat/completions", json={"model": "tiny", "messages": [{"role": "user", "content": huge}]}
        )
        seconds = time.monotonic() - began
        completion = await client.post("/v1/completions", json={"model": "tiny", "prompt": list(range(CONTEXT + 1))})
        ollama_chat = await client.post(
            "/api/chat", json={"model": "tiny", "messages": [{"role": "user", "content": huge}]}
        )
        ollama_generate = await client.post("/api/generate", json={"model": "tiny", "prompt": huge, "stream": False})
        fits = await client.post("/v1/completions", json={"model": "tiny", "prompt": "x" * 400_000})

    error = chat.json()["error"]
    assert chat.status_code == 400 and error["code"] == "context_length_exceeded" and error["param"] == "messages"
    assert "maximum context length is 2,048 tokens" in error["message"] and "at least 117,188" in error["message"]
    assert completion.status_code == 400 and completion.json()["error"]["param"] == "prompt"
    assert "2,049 token ids" in completion.json()["error"]["message"]
    for ollama in (ollama_chat, ollama_generate):
        assert ollama.status_code == 400 and "maximum context length" in ollama.json()["error"]
    assert fits.status_code == 200  # 400,000 characters may be 1,563 tokens: the engine decides
    assert [len(str(body.get("prompt", ""))) for body in gw.engine.received] == [400_000]
    print(f"\n30 MB prompt refused in {seconds:.2f}s")  # reading and parsing the body is most of it


async def test_no_check_when_the_context_is_unknown(tmp_path: Path) -> None:
    async with production_gateway(tmp_path / "home") as gw, gw.client() as client:
        response = await client.post("/v1/completions", json={"model": "tiny", "prompt": list(range(100_000))})
    assert response.status_code == 200
