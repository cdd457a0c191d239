"""Reading a request body and its JSON on a raw ASGI `receive`, for the routes outside app.py."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

import orjson

from servestack.errors import BadRequest, PayloadTooLarge
from servestack.gateway.responses import Receive, Scope


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
    return request


def query(scope: Scope) -> dict[str, str]:
    """The query string's parameters (last value wins)."""
    raw = scope.get("query_string", b"").decode("latin-1")
    return {name: values[-1] for name, values in parse_qs(raw).items()}


def header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None
