"""The LiteLLM SDK through its `openai/` and `ollama_chat/` providers, against both engines."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from types import ModuleType

import pytest

from tests.clients.conftest import Stack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def litellm() -> Iterator[ModuleType]:
    """LiteLLM, told to use its bundled model cost map (it would fetch one from the network on import)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        module = importlib.import_module("litellm")
        module.telemetry = False
        yield module


def test_openai_provider_whole_and_streamed(stack: Stack, model: str, litellm: ModuleType) -> None:
    options = {"model": f"openai/{model}", "api_base": stack.v1, "api_key": "unused", "max_tokens": 5}
    reply = litellm.completion(messages=[{"role": "user", "content": "Say hello."}], **options)
    assert reply.choices[0].message.content and 0 < reply.usage.completion_tokens <= 5
    parts = litellm.completion(
        messages=[{"role": "user", "content": [{"type": "text", "text": "Say hello."}]}],
        stream=True,
        stream_options={"include_usage": True},
        **options,
    )
    chunks = list(parts)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert any(getattr(c, "usage", None) and c.usage.completion_tokens > 0 for c in chunks)


def test_ollama_chat_provider(stack: Stack, model: str, litellm: ModuleType) -> None:
    options = {"model": f"ollama_chat/{model}", "api_base": stack.url, "max_tokens": 5}
    reply = litellm.completion(messages=[{"role": "user", "content": "Say hello."}], **options)
    assert reply.choices[0].message.content
    chunks = list(litellm.completion(messages=[{"role": "user", "content": "Say hello."}], stream=True, **options))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
