"""LangChain's ChatOpenAI (which sends `max_completion_tokens`, `stream_options` and json_schema) and
ChatOllama, against both engines."""

from __future__ import annotations

import openai
import pytest
from langchain_core.messages import HumanMessage
from langchain_ollama import ChatOllama
from langchain_openai import ChatOpenAI
from pydantic import BaseModel

from tests.clients.conftest import JSON_MODE, Stack

pytestmark = pytest.mark.e2e


class Person(BaseModel):
    name: str
    age: int


def chat_openai(stack: Stack, model: str, **options: object) -> ChatOpenAI:
    return ChatOpenAI(base_url=stack.v1, api_key="unused", model=model, max_retries=0, **options)  # type: ignore[arg-type]


def test_invoke_and_stream_with_usage(stack: Stack, model: str) -> None:
    llm = chat_openai(stack, model, max_tokens=5, stream_usage=True)  # sent as max_completion_tokens
    reply = llm.invoke("Say hello.")
    assert reply.content and reply.usage_metadata and 0 < reply.usage_metadata["output_tokens"] <= 5
    chunks = list(llm.stream("Say hello."))
    whole = chunks[0]
    for chunk in chunks[1:]:
        whole += chunk  # type: ignore[assignment]
    assert whole.content and whole.usage_metadata and 0 < whole.usage_metadata["output_tokens"] <= 5


def test_content_blocks(stack: Stack, model: str) -> None:
    message = HumanMessage(content=[{"type": "text", "text": "Say"}, {"type": "text", "text": "hello."}])
    assert chat_openai(stack, model, max_tokens=4).invoke([message]).content


def test_with_structured_output(stack: Stack, model: str) -> None:
    structured = chat_openai(stack, model, max_tokens=60).with_structured_output(Person)  # json_schema by default
    ask = "Give a person's name and age."
    if not JSON_MODE[model]:
        with pytest.raises(openai.BadRequestError) as refused:
            structured.invoke(ask)
        assert refused.value.body["param"] == "response_format"  # type: ignore[index]
        return
    assert isinstance(structured.invoke(ask), Person)


def test_chat_ollama_invoke_and_stream(stack: Stack, model: str) -> None:
    llm = ChatOllama(base_url=stack.url, model=model, num_predict=5)
    reply = llm.invoke("Say hello.")
    assert reply.content and reply.usage_metadata and reply.usage_metadata["output_tokens"] <= 5
    assert "".join(str(chunk.content) for chunk in llm.stream("Say hello."))
