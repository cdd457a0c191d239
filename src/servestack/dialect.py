"""The request dialect of an engine's OpenAI server: what it accepts of the current OpenAI request shape.

A leaf module (it imports nothing of servestack's) because two rooms speak of it: each engine adapter
declares its `Dialect` (engines/), and the gateway maps every request onto it (gateway/openai/conform.py).
The fields are plain facts about the engine's server, never about a model; the defaults describe a
server that takes today's OpenAI request as it is (vLLM), so an adapter lists only where its engine
differs, and cites where it found out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# How an engine takes JSON output (`response_format` json_object, and json_schema with its `schema`): as
# OpenAI defines it; json_schema as `{"type": "json_object", "schema": ...}` (llama-cpp-python turns that
# schema into a grammar); or not at all (both are refused).
JsonOutput = Literal["native", "schema_in_json_object", "none"]
# Which `X-Request-Id` values the engine accepts: any text, or only a UUID (llama-cpp-python answers
# anything else with a bare 400).
RequestIds = Literal["any", "uuid"]


@dataclass(frozen=True)
class Dialect:
    """What one engine's server accepts; the gateway rewrites a request only where it differs."""

    # The field that limits the answer's length: `max_completion_tokens` (today's OpenAI name, which
    # the engine honours) or `max_tokens` (the engine ignores the newer name, so it is renamed).
    output_limit: Literal["max_completion_tokens", "max_tokens"] = "max_completion_tokens"
    # A message's `content` must be a string: text parts are joined, a null content becomes "".
    text_content: bool = False
    # Image parts in a message's content reach the model (False: refused with a 400 naming them).
    images: bool = True
    # The `developer` role is known (False: sent as `system`, which it replaced in OpenAI's API).
    developer_role: bool = True
    json_output: JsonOutput = "native"
    tools: bool = True
    # `tool_choice: "required"` is honoured (False: with one tool it is sent as that tool's name, which
    # forces the same call; with several it is refused).
    tool_choice_required: bool = True
    logprobs: bool = True
    # `n` > 1 is honoured (False: refused, instead of one choice silently coming back).
    choices: bool = True
    # A stream asked for `stream_options.include_usage` ends with a usage chunk (False: the gateway
    # sends one from its own count).
    stream_usage: bool = True
    # It serves /v1/embeddings (False: refused with a 400 before the request reaches it).
    embeddings: bool = True
    request_ids: RequestIds = "any"
    # Regular expressions for the messages of the engine's 5xx answers that are about the request, not
    # the engine (a server that answers its validation errors with 500): 400 to the client, and no
    # count against the replica's circuit breaker.
    invalid_request_errors: tuple[str, ...] = ()


OPENAI = Dialect()
