"""Mapping an OpenAI request onto what one engine's server accepts (its `Dialect`).

Clients send today's OpenAI request shape; engines accept older or narrower ones. For each replica a
request is tried on, `conform` returns the request as that engine takes it: the very same dict when
nothing differs (the client's bytes are then sent untouched), else a changed copy. What an engine
cannot do at all is refused here with a 400 naming the parameter, never silently dropped:

    max_completion_tokens     → max_tokens, for engines that only read the older name
    content parts             → one string, for engines whose chat template needs text (null → "")
    image parts               → 400 on an engine that takes no images
    developer role            → system, for engines that do not know it
    response_format           → json_schema as a json_object with a schema, where that is the engine's
                                mechanism; 400 where it has none
    tools, logprobs, n > 1    → 400 where the engine would ignore them
    embeddings                → 400 where the engine serves none
    tool_choice "required"    → the one tool's name where "required" is ignored (400 with several tools)

Each rule reads only the dialect's fields: no engine is named here. The rules see the request as the
OpenAI routes get it, and as the Ollama routes translate it (ollama/format.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from servestack.dialect import Dialect
from servestack.errors import BadRequest

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
EMBEDDINGS = "/v1/embeddings"
Request = dict[str, Any]
# A rule returns the changed request (None: nothing to change) or raises BadRequest; it never mutates.
Rule = Callable[[Request, Dialect], Request | None]


def conform(request: Request, path: str, dialect: Dialect, model: str) -> Request:
    """`request` as `dialect`'s engine accepts it on `path`: `request` itself when nothing changes."""
    rules = RULES.get(path)
    if not rules:
        return request
    current = request
    try:
        for rule in rules:
            current = rule(current, dialect) or current
    except BadRequest as refused:
        raise BadRequest(f"{refused.message} (model '{model}')", param=refused.param) from None
    return current


def _output_limit(request: Request, dialect: Dialect) -> Request | None:
    if dialect.output_limit == "max_completion_tokens" or "max_completion_tokens" not in request:
        return None
    limit = request["max_completion_tokens"]
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise BadRequest("'max_completion_tokens' must be a positive integer", param="max_completion_tokens")
    renamed = {k: v for k, v in request.items() if k != "max_completion_tokens"}
    if limit is not None:
        renamed["max_tokens"] = limit
    return renamed


def _messages(request: Request, dialect: Dialect) -> Request | None:
    messages = request.get("messages")
    if not isinstance(messages, list):
        return None
    out, changed = [], False
    for number, message in enumerate(messages):
        fixed = _message(message, number, dialect) if isinstance(message, dict) else message
        changed |= fixed is not message
        out.append(fixed)
    return {**request, "messages": out} if changed else None


def _message(message: dict[str, Any], number: int, dialect: Dialect) -> dict[str, Any]:
    content = message.get("content")
    fixed: dict[str, Any] | None = None
    if isinstance(content, list):
        _check_parts(content, number, dialect)
        if dialect.text_content:
            fixed = {**message, "content": _text_of(content)}
    elif content is None and dialect.text_content and "content" in message:
        fixed = {**message, "content": ""}
    if message.get("role") == "developer" and not dialect.developer_role:
        fixed = {**(fixed or message), "role": "system"}
    return fixed if fixed is not None else message


def _check_parts(parts: list[Any], number: int, dialect: Dialect) -> None:
    for part in parts:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            continue
        if kind == "image_url" and dialect.images:
            continue
        if kind == "image_url":
            raise BadRequest(
                f"messages[{number}] has an image part, and this model's engine takes text only", param="messages"
            )
        if dialect.text_content or kind is None:
            raise BadRequest(
                f"messages[{number}].content has a part of type {kind!r}; this model's engine takes text parts only",
                param="messages",
            )


def _text_of(parts: list[dict[str, Any]]) -> str:
    # Text parts are joined with newlines, as vLLM renders them for a text-only chat template.
    return "\n".join(part["text"] for part in parts)


def _response_format(request: Request, dialect: Dialect) -> Request | None:
    wanted = request.get("response_format")
    if not isinstance(wanted, dict) or wanted.get("type") in (None, "text"):
        return None
    kind = wanted.get("type")
    if kind not in ("json_object", "json_schema"):
        raise BadRequest(
            f"response_format type {kind!r} is not one of text, json_object, json_schema", param="response_format"
        )
    if dialect.json_output == "none":
        raise BadRequest(
            f"response_format {kind} is not supported: this model's engine has no JSON mode", param="response_format"
        )
    if kind == "json_object" or dialect.json_output == "native":
        return None
    spec = wanted.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, dict) else None
    if not isinstance(schema, dict):
        raise BadRequest(
            "response_format json_schema needs a 'json_schema' object with a 'schema'", param="response_format"
        )
    return {**request, "response_format": {"type": "json_object", "schema": schema}}


def _tools(request: Request, dialect: Dialect) -> Request | None:
    tools = request.get("tools")
    if not tools:
        return None
    if not dialect.tools:
        raise BadRequest("tools are not supported: this model's engine has no tool calling", param="tools")
    if request.get("tool_choice") != "required" or dialect.tool_choice_required:
        return None
    if not isinstance(tools, list) or len(tools) != 1 or not isinstance(tools[0], dict):
        raise BadRequest(
            "tool_choice 'required' with several tools is not supported by this model's engine: name one tool",
            param="tool_choice",
        )
    name = (tools[0].get("function") or {}).get("name")
    return {**request, "tool_choice": {"type": "function", "function": {"name": name}}}


def _logprobs(request: Request, dialect: Dialect) -> Request | None:
    asked = request.get("logprobs") not in (None, False) or request.get("top_logprobs") is not None
    if asked and not dialect.logprobs:
        raise BadRequest("logprobs are not supported by this model's engine", param="logprobs")
    return None


def _choices(request: Request, dialect: Dialect) -> Request | None:
    if dialect.choices:
        return None
    for name in ("n", "best_of"):
        value = request.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 1:
            raise BadRequest(f"{name} > 1 is not supported: this model's engine answers one choice", param=name)
    return None


def _embeddings(request: Request, dialect: Dialect) -> Request | None:
    if not dialect.embeddings:
        raise BadRequest("embeddings are not served: this model's engine runs it for generation only", param="model")
    return None


RULES: dict[str, tuple[Rule, ...]] = {
    CHAT: (_output_limit, _messages, _response_format, _tools, _logprobs, _choices),
    COMPLETIONS: (_logprobs, _choices),
    EMBEDDINGS: (_embeddings,),
}
