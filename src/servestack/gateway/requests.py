"""Reading a request body and its JSON on a raw ASGI `receive`.

A body is parsed once (orjson) and refused when it nests deeper than `MAX_JSON_DEPTH`: orjson reads
up to 1,024 levels but writes only 255, and the gateway re-encodes some bodies (aliases, stream
usage, Ollama's translation), so anything it accepts must be writable again with room to wrap it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

import orjson

from servestack.errors import BadRequest, PayloadTooLarge
from servestack.gateway.responses import Receive, Scope

MAX_JSON_DEPTH = 128


async def read_body(receive: Receive, max_bytes: int) -> bytes:
    """The whole request body; 413 past `max_bytes`, 400 when the client leaves half-way."""
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise BadRequest("the client disconnected before sending the whole body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLarge(f"request body is larger than {max_bytes} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def read_json(receive: Receive, max_bytes: int) -> dict[str, Any]:
    """The body as a JSON object; an empty body is an empty object."""
    body = await read_body(receive, max_bytes)
    return parse_object(body) if body.strip() else {}


def parse_object(body: bytes) -> dict[str, Any]:
    """`body` parsed as a JSON object, or 400."""
    try:
        request = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(request, dict):
        raise BadRequest("the request body must be a JSON object")
    # A body cannot nest deeper than it has brackets: counting them (C speed) spares most bodies the walk.
    if body.count(b"{") + body.count(b"[") > MAX_JSON_DEPTH and _too_deep(request):
        raise BadRequest(f"the request body nests JSON deeper than {MAX_JSON_DEPTH} levels")
    return request


def _too_deep(value: object) -> bool:
    """Whether `value` holds containers nested more than MAX_JSON_DEPTH deep (iterative: no recursion limit)."""
    level: list[object] = [value]
    for _ in range(MAX_JSON_DEPTH):
        level = [
            child
            for item in level
            for child in (item.values() if isinstance(item, dict) else item)  # type: ignore[attr-defined]
            if isinstance(child, dict | list)
        ]
        if not level:
            return False
    return True


def query(scope: Scope) -> dict[str, str]:
    """The query string's parameters (last value wins)."""
    raw = scope.get("query_string", b"").decode("latin-1")
    return {name: values[-1] for name, values in parse_qs(raw).items()}


def header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None
