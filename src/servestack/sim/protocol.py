"""The OpenAI wire format as vLLM speaks it: reading generation requests, writing answers and SSE chunks.

Only what the simulator acts on is read (`model`, `messages` or `prompt`, `max_tokens` /
`max_completion_tokens`, `stream`, `stream_options.include_usage`, `n`); sampling parameters are
accepted and ignored. The simulator always generates exactly `max_tokens` tokens, as with
`ignore_eos`; the finish reason is `length` when the client set a limit and `stop` otherwise.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import Enum
from typing import Any

import orjson

from servestack.asgi import parse_object
from servestack.errors import BadRequest
from servestack.sim.tokenizer import chat_segments

DONE = b"data: [DONE]\n\n"


class Route(Enum):
    CHAT = "/v1/chat/completions"
    COMPLETION = "/v1/completions"


@dataclass(frozen=True)
class GenerationRequest:
    route: Route
    model: str | None
    # Chat: one rendered segment per message, then the assistant header. /v1/completions: the prompt
    # text as one segment, or token ids as sent.
    prompt: tuple[str, ...] | list[int]
    max_tokens: int | None
    stream: bool
    include_usage: bool

    @property
    def finish_reason(self) -> str:
        return "stop" if self.max_tokens is None else "length"


def parse_request(route: Route, body: bytes) -> GenerationRequest:
    """Read a generation request; anything the simulator cannot honour is a BadRequest (HTTP 400)."""
    data = parse_object(body)
    model = data.get("model")
    if model is not None and not isinstance(model, str):
        raise BadRequest("'model' must be a string", param="model")
    if data.get("n", 1) != 1:
        raise BadRequest("the simulator generates one choice per request (n must be 1)", param="n")
    stream = data.get("stream", False)
    if not isinstance(stream, bool):
        raise BadRequest("'stream' must be true or false", param="stream")
    options = data.get("stream_options") or {}
    include_usage = bool(options.get("include_usage", False)) if isinstance(options, dict) else False
    prompt = _chat_prompt(data) if route is Route.CHAT else _completion_prompt(data)
    return GenerationRequest(route, model, prompt, _max_tokens(data, route), stream, stream and include_usage)


def _chat_prompt(data: dict[str, Any]) -> tuple[str, ...]:
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise BadRequest("'messages' must be a non-empty list of message objects", param="messages")
    return chat_segments(messages)


def _completion_prompt(data: dict[str, Any]) -> tuple[str, ...] | list[int]:
    prompt = data.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str | list):
        prompt = prompt[0]  # a batch of one
    if isinstance(prompt, str):
        return (prompt,)
    if isinstance(prompt, list) and prompt and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
        return prompt
    raise BadRequest("'prompt' must be a string or a list of token ids (one prompt per request)", param="prompt")


def _max_tokens(data: dict[str, Any], route: Route) -> int | None:
    key = "max_completion_tokens" if route is Route.CHAT and "max_completion_tokens" in data else "max_tokens"
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise BadRequest(f"'{key}' must be a positive integer", param=key)
    return value


def usage(prompt_tokens: int, completion_tokens: int, cached_tokens: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": cached_tokens},
    }


class AnswerWriter:
    """Formats one request's answer, whole or as SSE chunks, in the shape of its route."""

    def __init__(self, route: Route, request_id: str, model: str, fingerprint: str) -> None:
        self.chat = route is Route.CHAT
        self.head = {
            "id": ("chatcmpl-" if self.chat else "cmpl-") + request_id,
            "object": "chat.completion.chunk" if self.chat else "text_completion",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": fingerprint,
        }

    def whole(self, text: str, finish_reason: str, usage: dict[str, Any]) -> bytes:
        if self.chat:
            choice = {"index": 0, "message": {"role": "assistant", "content": text}}
        else:
            choice = {"index": 0, "text": text}
        choice |= {"logprobs": None, "finish_reason": finish_reason}
        obj = "chat.completion" if self.chat else "text_completion"
        return orjson.dumps({**self.head, "object": obj, "choices": [choice], "usage": usage})

    def chunk(self, text: str, finish_reason: str | None = None, *, role: bool = False, usage_null: bool) -> bytes:
        """One SSE event carrying `text` (chat: with the assistant role on the first one)."""
        if self.chat:
            delta: dict[str, str] = {"role": "assistant", "content": text} if role else {"content": text}
            choice: dict[str, Any] = {"index": 0, "delta": delta}
        else:
            choice = {"index": 0, "text": text}
        choice |= {"logprobs": None, "finish_reason": finish_reason}
        event: dict[str, Any] = {**self.head, "choices": [choice]}
        if usage_null:
            event["usage"] = None
        return b"data: " + orjson.dumps(event) + b"\n\n"

    def usage_chunk(self, usage: dict[str, Any]) -> bytes:
        """The last event when `stream_options.include_usage` is set: no choices, the usage."""
        return b"data: " + orjson.dumps({**self.head, "choices": [], "usage": usage}) + b"\n\n"
