"""Writing responses on a raw ASGI `send`: JSON bodies and OpenAI-style errors."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

from servestack.errors import GatewayError

Message = MutableMapping[str, Any]
Send = Callable[[Message], Awaitable[None]]
Receive = Callable[[], Awaitable[Message]]
Scope = MutableMapping[str, Any]

JSON_HEADERS = [(b"content-type", b"application/json")]


async def send_json(send: Send, status: int, payload: object, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await send_bytes(send, status, orjson.dumps(payload), JSON_HEADERS + (headers or []))


async def send_bytes(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def send_redirect(send: Send, location: str) -> None:
    """A 302 to `location` (a path of this gateway), never cached."""
    await send_bytes(send, 302, b"", [(b"location", location.encode()), (b"cache-control", b"no-cache")])


def openai_error(error: GatewayError) -> dict[str, object]:
    return {"error": {"message": error.message, "type": error.type, "param": error.param, "code": error.code}}


async def send_error(send: Send, error: GatewayError, *, ollama: bool = False) -> None:
    """The error as OpenAI's JSON, or as Ollama's `{"error": "..."}` (for /api/* routes)."""
    headers = []
    if error.retry_after is not None:
        headers.append((b"retry-after", str(max(1, round(error.retry_after))).encode()))
    await send_json(send, error.status, {"error": error.message} if ollama else openai_error(error), headers)


def sse_error_event(error: GatewayError) -> bytes:
    """An error as one server-sent event, for failures after a stream has started."""
    return b"data: " + orjson.dumps(openai_error(error)) + b"\n\n"
