"""The official `ollama` SDK against the gateway's Ollama API, in front of both engines."""

from __future__ import annotations

import json

import ollama
import pytest

from tests.clients.conftest import JSON_MODE, Stack

pytestmark = pytest.mark.e2e

ASK = [{"role": "user", "content": "Give a person's name and age as JSON."}]
PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
}


def client(stack: Stack) -> ollama.Client:
    return ollama.Client(host=stack.url)


def test_chat_and_generate_whole_and_streamed(stack: Stack, model: str) -> None:
    chat = client(stack).chat(model=model, messages=ASK, options={"num_predict": 6}, keep_alive="5m")
    assert chat.message.content and chat.done and chat.eval_count and chat.eval_count <= 6
    parts = list(client(stack).chat(model=f"{model}:latest", messages=ASK, stream=True, options={"num_predict": 6}))
    assert "".join(p.message.content or "" for p in parts) and parts[-1].done
    generated = client(stack).generate(model=model, prompt="Say hi.", options={"num_predict": 4}, keep_alive=-1)
    assert generated.response and generated.done


def test_format_json_and_schema(stack: Stack, model: str) -> None:
    for fmt in ("json", PERSON):
        if not JSON_MODE[model]:
            with pytest.raises(ollama.ResponseError) as refused:
                client(stack).chat(model=model, messages=ASK, format=fmt, options={"num_predict": 40})
            assert refused.value.status_code == 400 and "JSON mode" in refused.value.error
            continue
        reply = client(stack).chat(model=model, messages=ASK, format=fmt, options={"num_predict": 60})
        answer = json.loads(reply.message.content or "")
        assert isinstance(answer, dict)
        if fmt is PERSON:
            assert set(answer) == {"name", "age"} and isinstance(answer["age"], int)


def test_keep_alive_is_accepted_in_its_shapes_and_refused_otherwise(stack: Stack) -> None:
    for keep_alive in ("10m", "1h30m", 0, -1, 300):
        assert client(stack).generate(model="sim", prompt="hi", options={"num_predict": 2}, keep_alive=keep_alive).done
    with pytest.raises(ollama.ResponseError) as refused:
        client(stack).generate(model="sim", prompt="hi", keep_alive="soon")
    assert refused.value.status_code == 400 and "keep_alive" in refused.value.error


def test_embed_on_an_engine_without_embeddings_is_a_clear_400(stack: Stack, model: str) -> None:
    with pytest.raises(ollama.ResponseError) as refused:
        client(stack).embed(model=model, input="hello")
    assert refused.value.status_code == 400 and "embeddings are not served" in refused.value.error


def test_list_ps_show(stack: Stack) -> None:
    names = {m.model for m in client(stack).list().models}
    assert names == {"smollm2", "sim"}
    assert {m.model for m in client(stack).ps().models} == names
    assert client(stack).show("smollm2").details.format == "gguf"  # type: ignore[union-attr]
    with pytest.raises(ollama.ResponseError) as missing:
        client(stack).show("llama3")
    assert missing.value.status_code == 404


def test_an_engine_error_is_the_same_status_as_on_v1_and_carries_no_traceback(stack: Stack) -> None:
    """A request llama-cpp-python rejects (its validation error, answered as a 500 with a file path)."""
    with pytest.raises(ollama.ResponseError) as refused:
        client(stack).chat(model="smollm2", messages=ASK, options={"temperature": "hot", "num_predict": 4})
    assert refused.value.status_code == 400
    assert "validation error" in refused.value.error and "File " not in refused.value.error
    assert "site-packages" not in refused.value.error
