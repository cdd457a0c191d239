"""The official `openai` SDK against the default engine (llama-cpp-python) and the simulator (vLLM's API)."""

from __future__ import annotations

import json
import threading
import uuid

import httpx
import openai
import pytest
from openai import OpenAI
from pydantic import BaseModel

from tests.clients.conftest import JSON_MODE, LOGPROBS, TOOLS, Stack

pytestmark = pytest.mark.e2e

HI = [{"role": "user", "content": "Say hello."}]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


class Person(BaseModel):
    name: str
    age: int


def client(stack: Stack, **options: object) -> OpenAI:
    return OpenAI(base_url=stack.v1, api_key="unused", max_retries=0, **options)  # type: ignore[arg-type]


def test_max_completion_tokens_limits_the_answer(stack: Stack, model: str) -> None:
    reply = client(stack).chat.completions.create(model=model, messages=HI, max_completion_tokens=4)
    assert reply.usage is not None and 0 < reply.usage.completion_tokens <= 4
    text = client(stack).completions.create(model=model, prompt="The capital of France is", max_tokens=4)
    assert text.choices[0].text and text.usage is not None and text.usage.completion_tokens <= 4


def test_a_stream_with_include_usage_ends_with_the_usage(stack: Stack, model: str) -> None:
    chunks = list(
        client(stack).chat.completions.create(
            model=model, messages=HI, max_tokens=6, stream=True, stream_options={"include_usage": True}
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    usage = chunks[-1].usage
    assert usage is not None and chunks[-1].choices == [] and 0 < usage.completion_tokens <= 6
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    if model == "smollm2":  # llama-cpp-python sends no usage on streams: the gateway's own count, marked
        assert usage.model_extra == {"estimated": True}
    plain = list(client(stack).chat.completions.create(model=model, messages=HI, max_tokens=4, stream=True))
    assert all(c.usage is None for c in plain)  # not asked for: none


def test_content_parts_whole_and_streamed(stack: Stack, model: str) -> None:
    parts = [{"role": "user", "content": [{"type": "text", "text": "Say"}, {"type": "text", "text": "hello."}]}]
    reply = client(stack).chat.completions.create(model=model, messages=parts, max_tokens=4)  # type: ignore[arg-type]
    assert reply.choices[0].message.content
    chunks = list(client(stack).chat.completions.create(model=model, messages=parts, max_tokens=4, stream=True))  # type: ignore[arg-type]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_an_image_part_on_a_text_only_engine_is_a_clear_400(stack: Stack, model: str) -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    messages = [{"role": "user", "content": [{"type": "text", "text": "What is this?"}, image]}]
    with pytest.raises(openai.BadRequestError) as refused:
        client(stack).chat.completions.create(model=model, messages=messages, max_tokens=4)  # type: ignore[arg-type]
    assert "image part" in refused.value.message and refused.value.body["param"] == "messages"  # type: ignore[index]


def test_json_object_and_json_schema(stack: Stack, model: str) -> None:
    ask = [{"role": "user", "content": "Give a person's name and age as JSON."}]
    if not JSON_MODE[model]:
        with pytest.raises(openai.BadRequestError) as refused:
            client(stack).chat.completions.parse(model=model, messages=ask, response_format=Person, max_tokens=40)  # type: ignore[arg-type]
        assert refused.value.body["param"] == "response_format" and "JSON mode" in refused.value.message  # type: ignore[index]
        return
    parsed = client(stack).chat.completions.parse(model=model, messages=ask, response_format=Person, max_tokens=60)  # type: ignore[arg-type]
    assert isinstance(parsed.choices[0].message.parsed, Person)
    loose = client(stack).chat.completions.create(
        model=model,
        messages=ask,
        response_format={"type": "json_object"},
        max_tokens=60,  # type: ignore[arg-type]
    )
    assert isinstance(json.loads(loose.choices[0].message.content or ""), dict)


def test_tools_named_and_required(stack: Stack, model: str) -> None:
    ask = [{"role": "user", "content": "What is the weather in Paris?"}]
    if not TOOLS[model]:
        with pytest.raises(openai.BadRequestError) as refused:
            client(stack).chat.completions.create(model=model, messages=ask, tools=[WEATHER], max_tokens=30)  # type: ignore[arg-type,list-item]
        assert refused.value.body["param"] == "tools"  # type: ignore[index]
        return
    for choice in ({"type": "function", "function": {"name": "get_weather"}}, "required"):
        reply = client(stack).chat.completions.create(
            model=model,
            messages=ask,
            tools=[WEATHER],
            tool_choice=choice,
            max_tokens=80,  # type: ignore[arg-type,list-item]
            temperature=0,
        )
        calls = reply.choices[0].message.tool_calls
        assert calls and calls[0].function.name == "get_weather"  # type: ignore[union-attr]
        # At temperature 0 the arguments end well within the limit (at 30 tokens a sampled answer could be cut).
        assert reply.choices[0].finish_reason != "length"
        # A grammar forces the JSON's shape; a 135M model may still put a raw control character in a string.
        assert isinstance(json.loads(calls[0].function.arguments, strict=False), dict)  # type: ignore[union-attr]


def test_logprobs(stack: Stack, model: str) -> None:
    if not LOGPROBS[model]:
        with pytest.raises(openai.BadRequestError) as refused:
            client(stack).chat.completions.create(model=model, messages=HI, max_tokens=3, logprobs=True)
        assert refused.value.body["param"] == "logprobs"  # type: ignore[index]
        return
    reply = client(stack).chat.completions.create(model=model, messages=HI, max_tokens=3, logprobs=True, top_logprobs=2)
    assert reply.choices[0].logprobs is not None and reply.choices[0].logprobs.content


def test_n_greater_than_one_is_refused_not_dropped(stack: Stack, model: str) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client(stack).chat.completions.create(model=model, messages=HI, max_tokens=3, n=2)
    assert refused.value.body["param"] == "n"  # type: ignore[index]


def test_a_client_id_is_echoed_and_in_the_ledger(stack: Stack, model: str) -> None:
    request_id = f"req-{model}-{uuid.uuid4().hex[:8]}"  # not a UUID: llama-cpp-python refused it with a bare 400
    raw = client(stack).chat.completions.with_raw_response.create(
        model=model, messages=HI, max_tokens=3, extra_headers={"X-Request-Id": request_id}
    )
    assert raw.headers["x-request-id"] == request_id and raw.parse().choices
    assert stack.ledger(request_id) == (200, 0)
    bad = httpx.post(f"{stack.v1}/chat/completions", json={}, headers={"X-Request-Id": "x" * 500})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "x-request-id"


def test_models_list_and_retrieve(stack: Stack) -> None:
    assert {m.id for m in client(stack).models.list()} == {"smollm2", "sim"}
    assert client(stack).models.retrieve("smollm2").id == "smollm2"
    with pytest.raises(openai.NotFoundError):
        client(stack).models.retrieve("gpt-5")


def test_cancel_mid_stream_is_recorded_499(stack: Stack, model: str) -> None:
    request_id = f"cut-stream-{model}-{uuid.uuid4().hex[:8]}"
    before = stack.metric(model, 499)
    stream = client(stack).chat.completions.create(
        model=model, messages=HI, max_tokens=400, stream=True, extra_headers={"X-Request-Id": request_id}
    )
    for n, _ in enumerate(stream):
        if n == 2:
            break
    stream.close()
    assert stack.ledger(request_id) == (499, 1)
    assert stack.metric(model, 499) == before + 1


def test_a_dropped_whole_request_is_recorded_499(stack: Stack, model: str) -> None:
    request_id = f"cut-whole-{model}-{uuid.uuid4().hex[:8]}"
    impatient = client(stack, timeout=0.5)
    with pytest.raises(openai.APITimeoutError):
        impatient.chat.completions.create(  # min_tokens: llama-cpp-python may not stop early (the sim never does)
            model=model,
            messages=HI,
            max_tokens=300,
            extra_body={"min_tokens": 250},
            extra_headers={"X-Request-Id": request_id},
        )
    assert stack.ledger(request_id) == (499, 0)


def test_a_clients_bad_requests_do_not_take_the_model_from_others(stack: Stack, model: str) -> None:
    """One client sends requests the engine rejects, in a loop; another's good requests all succeed."""
    bad_answers: list[int] = []
    stop = threading.Event()

    def misbehave() -> None:
        with httpx.Client(timeout=30) as http:
            for _ in range(12):
                if stop.is_set():
                    break
                body = {"model": model, "messages": HI, "max_tokens": "many"}  # the engine's validation error
                bad_answers.append(http.post(f"{stack.v1}/chat/completions", json=body).status_code)

    bad = threading.Thread(target=misbehave)
    bad.start()
    try:
        good = [client(stack).chat.completions.create(model=model, messages=HI, max_tokens=2) for _ in range(6)]
    finally:
        stop.set()
        bad.join()
    assert all(reply.choices for reply in good)
    assert bad_answers and set(bad_answers) == {400}
    after = client(stack).chat.completions.create(model=model, messages=HI, max_tokens=2)
    assert after.choices
