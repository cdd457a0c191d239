"""Ollama's API through the gateway, driven by the official `ollama` client: chat, generate,
streaming, list, ps, show, embed; answers translated from the engine's OpenAI API."""

from __future__ import annotations

from pathlib import Path

import httpx
import ollama
import pytest

from tests.gateway.prod_engine import COMPLETION_TOKENS, PIECES, PROMPT_TOKENS
from tests.gateway.prod_harness import production_gateway

pytestmark = pytest.mark.anyio

MESSAGES = [{"role": "user", "content": "hi"}]
GATEWAY = {"auth": {"enabled": True}, "aliases": {"llama3": "tiny"}}


async def test_ollama_client_chat_generate_and_streams(tmp_path: Path) -> None:
    async with production_gateway(tmp_path / "home", GATEWAY) as gw:
        secret = await gw.create_key("ollama-user")
        client = ollama.AsyncClient(host=gw.url, headers={"Authorization": f"Bearer {secret}"})

        chat = await client.chat(model="tiny", messages=MESSAGES, options={"temperature": 0.1, "num_predict": 5})
        assert chat.message.role == "assistant" and chat.message.content == "".join(PIECES)
        assert chat.done and chat.done_reason == "stop"
        assert chat.prompt_eval_count == PROMPT_TOKENS and chat.eval_count == COMPLETION_TOKENS
        sent = gw.engine.received[-1]
        assert sent["temperature"] == 0.1 and sent["max_tokens"] == 5 and sent["stream"] is False

        parts = [part async for part in await client.chat(model="llama3:latest", messages=MESSAGES, stream=True)]
        assert "".join(p.message.content or "" for p in parts) == "".join(PIECES)
        assert [p.done for p in parts] == [False] * len(PIECES) + [True]
        assert parts[-1].eval_count == COMPLETION_TOKENS and parts[-1].prompt_eval_count == PROMPT_TOKENS
        assert parts[-1].model == "llama3:latest" and gw.engine.received[-1]["model"] == "tiny"
        assert gw.engine.received[-1]["stream_options"] == {"include_usage": True}

        generated = await client.generate(model="tiny", prompt="Say hello", system="Be brief.")
        assert generated.response == "".join(PIECES) and generated.done
        assert gw.engine.received[-1]["messages"] == [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Say hello"},
        ]
        pieces = [p.response async for p in await client.generate(model="tiny", prompt="Say hello", stream=True)]
        assert "".join(pieces) == "".join(PIECES)
        raw = await client.generate(model="tiny", prompt="The capital", raw=True)
        assert raw.response == "".join(PIECES) and gw.engine.received[-1]["prompt"] == "The capital"
        loaded = await client.generate(model="tiny")  # Ollama's "load the model" call
        assert loaded.done and loaded.done_reason == "load"

        embedded = await client.embed(model="tiny", input="hello")
        assert [list(e) for e in embedded.embeddings] == [[0.1, 0.2, 0.3]]

        with pytest.raises(ollama.ResponseError) as missing:
            await client.chat(model="nope", messages=MESSAGES)
        assert missing.value.status_code == 404 and "nope" in missing.value.error


async def test_ollama_listing_routes(tmp_path: Path) -> None:
    async with production_gateway(tmp_path / "home", GATEWAY) as gw:
        secret = await gw.create_key("ollama-user")
        client = ollama.AsyncClient(host=gw.url, headers={"Authorization": f"Bearer {secret}"})
        listed = await client.list()
        assert sorted(m.model or "" for m in listed.models) == ["llama3", "tiny"]
        running = await client.ps()
        assert sorted(m.model or "" for m in running.models) == ["llama3", "tiny"]
        shown = await client.show("tiny")
        assert shown.capabilities == ["completion"] and "tiny" in (shown.modelfile or "")
        with pytest.raises(ollama.ResponseError) as missing:
            await client.show("nope")
        assert missing.value.status_code == 404
        async with httpx.AsyncClient(base_url=gw.url, headers={"Authorization": f"Bearer {secret}"}) as http:
            version = (await http.get("/api/version")).json()
            root = await http.get("/")
        assert version["version"].count(".") == 2 and root.text == "Ollama is running"
        anonymous = ollama.AsyncClient(host=gw.url)
        with pytest.raises(ollama.ResponseError) as refused:
            await anonymous.list()
        assert refused.value.status_code == 401


async def test_usage_of_ollama_requests_is_recorded(tmp_path: Path) -> None:
    home = tmp_path / "home"
    async with production_gateway(home, engine_name="llamacpp") as gw:
        client = ollama.AsyncClient(host=gw.url)
        parts = [p async for p in await client.chat(model="tiny", messages=MESSAGES, stream=True)]
        assert parts[-1].eval_count == len(PIECES)  # counted from the stream, no usage chunk from llama.cpp
        assert "stream_options" not in gw.engine.received[-1]
        ledger = gw.gateway.pipeline.ledger  # type: ignore[union-attr]
    assert ledger is not None
    from tests.gateway.prod_harness import ledger_rows

    [row] = ledger_rows(home)
    assert row["route"] == "/api/chat" and row["estimated"] == 1 and row["completion_tokens"] == len(PIECES)
