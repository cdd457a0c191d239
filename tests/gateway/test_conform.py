"""conform: a request mapped onto an engine's dialect, or refused with a 400 naming the parameter."""

from __future__ import annotations

from typing import Any

import pytest

from servestack.dialect import OPENAI, Dialect
from servestack.engines import ENGINES
from servestack.errors import BadRequest
from servestack.gateway.openai.conform import CHAT, COMPLETIONS, EMBEDDINGS, conform
from servestack.gateway.relay.engine_errors import clean

LLAMACPP = ENGINES["llamacpp"].dialect
SIM = ENGINES["sim"].dialect
HI = [{"role": "user", "content": "hi"}]
PERSON = {"type": "object", "properties": {"name": {"type": "string"}}}
TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        ({"messages": HI, "max_completion_tokens": 5}, {"messages": HI, "max_tokens": 5}),
        (
            {"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]},
            {"messages": [{"role": "user", "content": "a\nb"}]},
        ),
        (
            {"messages": [*HI, {"role": "assistant", "content": None, "tool_calls": []}]},
            {"messages": [*HI, {"role": "assistant", "content": "", "tool_calls": []}]},
        ),
        ({"messages": [{"role": "developer", "content": "x"}]}, {"messages": [{"role": "system", "content": "x"}]}),
        (
            {
                "messages": HI,
                "response_format": {"type": "json_schema", "json_schema": {"name": "p", "schema": PERSON}},
            },
            {"messages": HI, "response_format": {"type": "json_object", "schema": PERSON}},
        ),
        (
            {"messages": HI, "tools": [TOOL], "tool_choice": "required"},
            {"messages": HI, "tools": [TOOL], "tool_choice": {"type": "function", "function": {"name": "f"}}},
        ),
    ],
)
def test_requests_are_mapped_for_llama_cpp_python(request_: dict[str, Any], expected: dict[str, Any]) -> None:
    assert conform(request_, CHAT, LLAMACPP, "m") == expected


@pytest.mark.parametrize(
    ("path", "dialect", "request_", "param"),
    [
        (CHAT, LLAMACPP, {"messages": HI, "n": 2}, "n"),
        (COMPLETIONS, LLAMACPP, {"prompt": "x", "best_of": 3}, "best_of"),
        (CHAT, LLAMACPP, {"messages": HI, "max_completion_tokens": "many"}, "max_completion_tokens"),
        (CHAT, LLAMACPP, {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "messages"),
        (CHAT, LLAMACPP, {"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]}, "messages"),
        (CHAT, LLAMACPP, {"messages": HI, "tools": [TOOL, TOOL], "tool_choice": "required"}, "tool_choice"),
        (CHAT, SIM, {"messages": HI, "response_format": {"type": "json_object"}}, "response_format"),
        (CHAT, SIM, {"messages": HI, "tools": [TOOL]}, "tools"),
        (CHAT, SIM, {"messages": HI, "logprobs": True}, "logprobs"),
        (COMPLETIONS, SIM, {"prompt": "x", "logprobs": 2}, "logprobs"),
        (EMBEDDINGS, LLAMACPP, {"input": "x"}, "model"),
    ],
)
def test_what_an_engine_cannot_do_is_a_400_naming_the_parameter(
    path: str, dialect: Dialect, request_: dict[str, Any], param: str
) -> None:
    with pytest.raises(BadRequest) as refused:
        conform(request_, path, dialect, "chat")
    assert refused.value.param == param and "(model 'chat')" in refused.value.message


@pytest.mark.parametrize("dialect", [OPENAI, LLAMACPP, SIM])
def test_a_request_with_nothing_to_map_is_the_same_object(dialect: Dialect) -> None:
    request = {"messages": HI, "max_tokens": 5, "stream": True, "response_format": {"type": "text"}}
    assert conform(request, CHAT, dialect, "m") is request  # the client's bytes go as they came


def test_an_engine_that_takes_the_whole_request_gets_it_unchanged() -> None:
    parts = [{"role": "developer", "content": [{"type": "text", "text": "a"}, {"type": "image_url"}]}]
    request = {"messages": parts, "max_completion_tokens": 5, "n": 3, "tools": [TOOL], "tool_choice": "required"}
    assert conform(request, CHAT, OPENAI, "m") is request


def test_an_engine_message_loses_its_traceback_and_local_paths() -> None:
    said = (
        "1 validation error:\n  {'loc': ('body', 'max_tokens')}\n\n  File \"/work/x/.venv/lib/python3.11/site-packages/"
        'llama_cpp/server/app.py", line 376, in create_chat_completion'
    )
    assert clean(said) == "1 validation error:\n  {'loc': ('body', 'max_tokens')}"
    assert clean("Model path does not exist: /srv/models/secret/q4.gguf") == "Model path does not exist: q4.gguf"
