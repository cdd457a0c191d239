"""Answering an Ollama request from an engine's OpenAI answer, in Ollama's format.

The call itself is the relay's (`Upstream.call`: headers, in-flight count, deadline, error mapping);
this module only translates. Whole answers become one JSON object; streams become NDJSON, one line
per content delta and a final `done: true` line with token counts and durations. The request's body
for the engine is made for each replica tried (openai/attempt.py: conformed to its dialect, and asking
for a usage chunk when the engine can send one); without one the counts are estimated and the exchange
is flagged. Errors before the answer starts raise (the edge renders `{"error": ...}`); errors after it
are sent as a last `{"error": ...}` line, as Ollama does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from servestack.asgi import Send, send_json
from servestack.errors import GatewayError, UpstreamError
from servestack.gateway.fleet.endpoint import Endpoint
from servestack.gateway.ollama.format import done_reason, now_iso, ollama_tool_calls, stats
from servestack.gateway.openai.attempt import prepare_attempt
from servestack.gateway.openai.usage import estimate_prompt_tokens
from servestack.gateway.relay.exchange import Exchange
from servestack.gateway.relay.upstream import Upstream

Kind = Literal["chat", "generate", "embed", "embeddings"]
NDJSON = [(b"content-type", b"application/x-ndjson")]


@dataclass
class _Stream:
    """What a stream has told so far."""

    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    content_events: int = 0
    tool_calls: dict[int, dict[str, Any]] = field(default_factory=dict)


class OllamaRelay:
    """A `Relay` for one Ollama request: `kind` says which answer shape (the engine route is the exchange's)."""

    def __init__(self, upstream: Upstream, kind: Kind, model_name: str) -> None:
        self.upstream = upstream
        self.kind = kind
        self.model_name = model_name  # the name the client used, echoed in answers

    async def __call__(self, exchange: Exchange, endpoint: Endpoint, send: Send) -> None:
        prepare_attempt(exchange, endpoint, count_tokens=False)  # a translated stream always asks for usage
        if exchange.stream:
            await self._stream(exchange, endpoint, send)
            return
        async with self.upstream.call(exchange, endpoint) as answer:
            body = await answer.read()
        answer_json = _json_object(body)
        usage = answer_json.get("usage") or {}
        exchange.prompt_tokens = usage.get("prompt_tokens")
        exchange.completion_tokens = usage.get("completion_tokens")
        await send_json(send, 200, self._whole_answer(exchange, answer_json))

    def _whole_answer(self, exchange: Exchange, answer: dict[str, Any]) -> dict[str, Any]:
        total = time.monotonic() - exchange.started
        if self.kind == "embed":
            embeddings = [item.get("embedding") for item in answer.get("data", [])]
            return {
                "model": self.model_name,
                "embeddings": embeddings,
                "total_duration": int(total * 1e9),
                "load_duration": 0,
                "prompt_eval_count": exchange.prompt_tokens,
            }
        if self.kind == "embeddings":
            data = answer.get("data") or [{}]
            return {"embedding": data[0].get("embedding", [])}
        choice = (answer.get("choices") or [{}])[0]
        out: dict[str, Any] = {"model": self.model_name, "created_at": now_iso()}
        message = choice.get("message") or {}
        text = message.get("content") if "message" in choice else choice.get("text")
        if self.kind == "chat":
            reply: dict[str, Any] = {"role": "assistant", "content": text or ""}
            if message.get("reasoning_content"):
                reply["thinking"] = message["reasoning_content"]
            if message.get("tool_calls"):
                reply["tool_calls"] = ollama_tool_calls(message["tool_calls"])
            out["message"] = reply
        else:
            out["response"] = text or ""
        out.update(done=True, done_reason=done_reason(choice.get("finish_reason")))
        out.update(stats(exchange.prompt_tokens, exchange.completion_tokens, total, exchange.ttft, streamed=False))
        return out

    async def _stream(self, exchange: Exchange, endpoint: Endpoint, send: Send) -> None:
        state = _Stream()
        started = False
        try:
            async with self.upstream.call(exchange, endpoint) as answer:
                await send({"type": "http.response.start", "status": 200, "headers": NDJSON})
                started = True
                pending = b""
                async for chunk in answer.chunks():
                    lines = (pending + chunk).split(b"\n")
                    pending = lines.pop()
                    out = b"".join(self._line(line, state) for line in lines)
                    if out:
                        await send({"type": "http.response.body", "body": out, "more_body": True})
        except GatewayError as error:
            if not started:
                raise
            await self._send_error_line(send, UpstreamError(f"{error.message} (mid-stream)"))
            return
        self._count(exchange, state)
        final = self._final_line(exchange, state)
        await send({"type": "http.response.body", "body": final, "more_body": False})

    def _line(self, line: bytes, state: _Stream) -> bytes:
        line = line.strip()
        if not line.startswith(b"data:"):
            return b""
        data = line[5:].strip()
        if data == b"[DONE]" or not data:
            return b""
        event = orjson.loads(data)
        usage = event.get("usage")
        if usage:
            state.prompt_tokens = usage.get("prompt_tokens")
            state.completion_tokens = usage.get("completion_tokens")
        choices = event.get("choices") or []
        if not choices:
            return b""
        choice = choices[0]
        if choice.get("finish_reason"):
            state.finish_reason = choice["finish_reason"]
        delta = choice.get("delta")
        text = delta.get("content") if isinstance(delta, dict) else choice.get("text")
        thinking = delta.get("reasoning_content") if isinstance(delta, dict) else None
        if isinstance(delta, dict) and delta.get("tool_calls"):
            _merge_tool_calls(state, delta["tool_calls"])
        if not text and not thinking:
            return b""
        state.content_events += 1
        return self._piece(text or "", thinking)

    def _piece(self, text: str, thinking: str | None = None) -> bytes:
        out: dict[str, Any] = {"model": self.model_name, "created_at": now_iso()}
        if self.kind == "chat":
            message: dict[str, Any] = {"role": "assistant", "content": text}
            if thinking:
                message["thinking"] = thinking
            out["message"] = message
        else:
            out["response"] = text
        out["done"] = False
        return orjson.dumps(out) + b"\n"

    def _count(self, exchange: Exchange, state: _Stream) -> None:
        if state.prompt_tokens is None and state.completion_tokens is None:
            state.prompt_tokens = estimate_prompt_tokens(exchange.payload)
            state.completion_tokens = state.content_events
            exchange.usage_estimated = True
        exchange.prompt_tokens, exchange.completion_tokens = state.prompt_tokens, state.completion_tokens

    def _final_line(self, exchange: Exchange, state: _Stream) -> bytes:
        total = time.monotonic() - exchange.started
        out: dict[str, Any] = {"model": self.model_name, "created_at": now_iso()}
        if self.kind == "chat":
            message: dict[str, Any] = {"role": "assistant", "content": ""}
            if state.tool_calls:
                message["tool_calls"] = ollama_tool_calls([state.tool_calls[i] for i in sorted(state.tool_calls)])
            out["message"] = message
        else:
            out["response"] = ""
        out.update(done=True, done_reason=done_reason(state.finish_reason))
        out.update(stats(state.prompt_tokens, state.completion_tokens, total, exchange.ttft, streamed=True))
        return orjson.dumps(out) + b"\n"

    async def _send_error_line(self, send: Send, error: GatewayError) -> None:
        line = orjson.dumps({"error": error.message}) + b"\n"
        await send({"type": "http.response.body", "body": line, "more_body": False})


def _merge_tool_calls(state: _Stream, deltas: list[dict[str, Any]]) -> None:
    for delta in deltas:
        call = state.tool_calls.setdefault(int(delta.get("index", 0)), {"function": {"name": "", "arguments": ""}})
        function = delta.get("function") or {}
        call["function"]["name"] += function.get("name") or ""
        call["function"]["arguments"] += function.get("arguments") or ""


def _json_object(body: bytes) -> dict[str, Any]:
    """An engine's whole answer as a JSON object; anything else is the engine's failure (502)."""
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        answer = None
    if not isinstance(answer, dict):
        raise UpstreamError(f"the engine's answer is not a JSON object: {body[:200].decode(errors='replace')}")
    return answer
