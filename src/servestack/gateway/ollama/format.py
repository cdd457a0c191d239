"""Translating between Ollama's API and OpenAI's: requests one way, answers and stream lines back.

Pure functions on dicts, so the wire format is testable without a server. Ollama's request
`options` map onto OpenAI sampling fields (`num_predict` → `max_tokens`, ...); `format: json` or a
JSON schema maps onto `response_format`; tool calls carry their arguments as an object in Ollama and
as a JSON string in OpenAI. Durations in Ollama answers are nanoseconds.
"""

from __future__ import annotations

import hashlib
import math
import re
from datetime import UTC, datetime
from typing import Any

import orjson

from servestack.errors import BadRequest

# Ollama option → OpenAI field (the engines behind servestack accept top_k and min_p as extensions).
OPTIONS = {
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "min_p": "min_p",
    "seed": "seed",
    "stop": "stop",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
}
# Go's duration syntax, as Ollama parses `keep_alive` (a bare number is seconds).
_GO_DURATION = re.compile(r"^(-)?((?:\d+(?:\.\d+)?(?:h|m|s|ms|us|µs|ns))+)$")
_GO_PART = re.compile(r"(\d+(?:\.\d+)?)(h|m|s|ms|us|µs|ns)")
_GO_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
FOREVER = math.inf
FINISH_REASONS = {"stop": "stop", "length": "length", "tool_calls": "stop", "content_filter": "stop"}


def now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


def digest(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def chat_request(request: dict[str, Any], model: str, stream: bool) -> dict[str, Any]:
    """Ollama /api/chat → OpenAI /v1/chat/completions."""
    messages = request.get("messages")
    if messages is None:
        messages = []
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise BadRequest("'messages' must be a list of objects", param="messages")
    out: dict[str, Any] = {"model": model, "messages": [_message(m) for m in messages], "stream": stream}
    if isinstance(request.get("tools"), list) and request["tools"]:
        out["tools"] = request["tools"]
    _common(request, out)
    return out


def generate_request(request: dict[str, Any], model: str, stream: bool) -> tuple[str, dict[str, Any]]:
    """Ollama /api/generate → (OpenAI path, body): chat with the model's template, or a raw completion."""
    prompt = request.get("prompt") or ""
    if not isinstance(prompt, str):
        raise BadRequest("'prompt' must be a string", param="prompt")
    if request.get("raw"):
        out: dict[str, Any] = {"model": model, "prompt": prompt, "stream": stream}
        if isinstance(request.get("suffix"), str) and request["suffix"]:
            out["suffix"] = request["suffix"]
        _common(request, out)
        return "/v1/completions", out
    messages = []
    if isinstance(request.get("system"), str) and request["system"]:
        messages.append({"role": "system", "content": request["system"]})
    messages.append(_message({"role": "user", "content": prompt, "images": request.get("images")}))
    out = {"model": model, "messages": messages, "stream": stream}
    _common(request, out)
    return "/v1/chat/completions", out


def _common(request: dict[str, Any], out: dict[str, Any]) -> None:
    options = request.get("options")
    if options is not None and not isinstance(options, dict):
        raise BadRequest("'options' must be an object of model options", param="options")
    if isinstance(options, dict):
        for name, field in OPTIONS.items():
            if options.get(name) is not None:
                out[field] = options[name]
        limit = options.get("num_predict")
        if isinstance(limit, int) and limit >= 0:
            out["max_tokens"] = limit
    fmt = request.get("format")
    if fmt == "json":
        out["response_format"] = {"type": "json_object"}
    elif isinstance(fmt, dict):
        out["response_format"] = {"type": "json_schema", "json_schema": {"name": "response", "schema": fmt}}
    elif fmt not in (None, ""):
        raise BadRequest("'format' must be \"json\" or a JSON schema object", param="format")


def _message(message: dict[str, Any]) -> dict[str, Any]:
    content = message.get("content") or ""
    out: dict[str, Any] = {"role": message.get("role", "user"), "content": content}
    images = message.get("images")
    if isinstance(images, list) and images:
        parts: list[dict[str, Any]] = [{"type": "text", "text": content}]
        parts += [{"type": "image_url", "image_url": {"url": f"data:image/png;base64,{i}"}} for i in images]
        out["content"] = parts
    calls = message.get("tool_calls")
    if isinstance(calls, list) and calls:
        out["tool_calls"] = [_tool_call(n, call) for n, call in enumerate(calls)]
    if out["role"] == "tool" and "tool_call_id" in message:
        out["tool_call_id"] = message["tool_call_id"]
    return out


def _tool_call(n: int, call: object) -> dict[str, Any]:
    """One Ollama tool call (arguments as an object) → OpenAI's (arguments as JSON text)."""
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict):
        raise BadRequest('each of a message\'s \'tool_calls\' must be {"function": {"name", "arguments"}}')
    arguments = function.get("arguments", {})
    return {
        "id": f"call_{n}",
        "type": "function",
        "function": {"name": function.get("name", ""), "arguments": orjson.dumps(arguments).decode()},
    }


def ollama_tool_calls(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI tool calls (arguments as JSON text) → Ollama's (arguments as an object)."""
    out = []
    for call in calls:
        function = call.get("function") or {}
        arguments = function.get("arguments") or "{}"
        try:
            parsed = orjson.loads(arguments) if isinstance(arguments, str) else arguments
        except orjson.JSONDecodeError:
            parsed = {"_raw": arguments}
        out.append({"function": {"name": function.get("name", ""), "arguments": parsed}})
    return out


def done_reason(finish_reason: object) -> str:
    return FINISH_REASONS.get(str(finish_reason), "stop")


def stats(
    prompt_tokens: int | None,
    completion_tokens: int | None,
    total_seconds: float,
    ttft: float | None,
    streamed: bool,
) -> dict[str, Any]:
    """The timing and count fields of a final Ollama answer (only what is known)."""
    out: dict[str, Any] = {"total_duration": int(total_seconds * 1e9), "load_duration": 0}
    if prompt_tokens is not None:
        out["prompt_eval_count"] = prompt_tokens
    if completion_tokens is not None:
        out["eval_count"] = completion_tokens
    if streamed and ttft is not None:
        out["prompt_eval_duration"] = int(ttft * 1e9)
        out["eval_duration"] = int(max(0.0, total_seconds - ttft) * 1e9)
    else:
        out["eval_duration"] = int(total_seconds * 1e9)
    return out


def model_entry(name: str, model_format: str, modified_at: float) -> dict[str, Any]:
    """One model as /api/tags and /api/ps describe it (servestack does not know sizes or families)."""
    return {
        "name": name,
        "model": name,
        "modified_at": iso(modified_at),
        "size": 0,
        "digest": digest(name),
        "details": {
            "parent_model": "",
            "format": model_format,
            "family": "",
            "families": None,
            "parameter_size": "",
            "quantization_level": "",
        },
    }


def keep_alive_seconds(value: object) -> float:
    """Ollama's `keep_alive`: seconds as a number, or a Go duration (`5m`, `1h30m`, `0`); negative: forever."""
    if isinstance(value, bool):
        raise BadRequest("keep_alive must be a duration such as 5m, or a number of seconds", param="keep_alive")
    if isinstance(value, int | float):
        return FOREVER if value < 0 else float(value)
    if isinstance(value, str):
        text = value.strip()
        if text in ("0", "-1"):
            return 0.0 if text == "0" else FOREVER
        match = _GO_DURATION.match(text)
        if match is not None:
            seconds = sum(float(n) * _GO_UNITS[unit] for n, unit in _GO_PART.findall(match.group(2)))
            return FOREVER if match.group(1) else seconds
    raise BadRequest(f"keep_alive {value!r} is not a duration (e.g. 5m, 1h, 0, -1)", param="keep_alive")
