"""Raw ASGI plumbing shared by the gateway and the simulator: reading bodies and their JSON, writing
JSON, bytes and errors in OpenAI's (or Ollama's) shape.

Both are plain ASGI callables under uvicorn (httptools, uvloop) rather than a framework's: the request
path stays a dict lookup and a few sends. A body is parsed once (orjson) and refused when it nests
deeper than `MAX_JSON_DEPTH`: orjson reads up to 1,024 levels but writes only 255, and the gateway
re-encodes some bodies (aliases, stream usage, Ollama's translation), so anything it accepts must be
writable again with room to wrap it.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any, Protocol
from urllib.parse import parse_qs

import orjson

from servestack.errors import BadRequest, GatewayError, PayloadTooLarge

Message = MutableMapping[str, Any]
Send = Callable[[Message], Awaitable[None]]
Receive = Callable[[], Awaitable[Message]]
Scope = MutableMapping[str, Any]
Headers = Sequence[tuple[bytes, bytes]]
Handler = Callable[[Scope, Receive, Send], Awaitable[None]]

JSON_HEADERS = ((b"content-type", b"application/json"),)
MAX_JSON_DEPTH = 128
CHUNK_WRITER_SCOPE = "servestack.chunk_writer"  # where the server offers a request's `ChunkWriter`


class ChunkWriter(Protocol):
    """A server's way to write a started, chunked answer's body straight to its connection: what `send`
    does for each body part, without a message, a task switch and its checks per part (the gateway's
    server offers one in the scope, under CHUNK_WRITER_SCOPE; a stream's relay uses it once it began)."""

    def usable(self) -> bool:
        """Whether the answer has started, chunked, and is not complete: only then may `write` be used."""
        ...

    def write(self, data: bytes) -> bool:
        """Write `data` as the answer's next chunk; False once the client's buffer is full (`drain` first)."""
        ...

    async def drain(self) -> None:
        """Return once the client can take more."""
        ...


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


def header(scope: Scope, name: bytes) -> bytes | None:
    """The request's header `name` (lower case), or None."""
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def query(scope: Scope) -> dict[str, str]:
    """The query string's parameters (last value wins)."""
    raw = scope.get("query_string", b"").decode("latin-1")
    return {name: values[-1] for name, values in parse_qs(raw).items()}


async def send_bytes(send: Send, status: int, body: bytes, headers: Headers) -> None:
    await send(
        {"type": "http.response.start", "status": status, "headers": [*headers, (b"content-length", b"%d" % len(body))]}
    )
    await send({"type": "http.response.body", "body": body})


async def send_json(send: Send, status: int, payload: object, headers: Headers = ()) -> None:
    await send_bytes(send, status, orjson.dumps(payload), [*JSON_HEADERS, *headers])


async def send_redirect(send: Send, location: str) -> None:
    """A 302 to `location` (a path of this server), never cached."""
    await send_bytes(send, 302, b"", [(b"location", location.encode()), (b"cache-control", b"no-cache")])


def openai_error(error: GatewayError) -> dict[str, object]:
    return {"error": {"message": error.message, "type": error.type, "param": error.param, "code": error.code}}


async def send_error(send: Send, error: GatewayError, *, ollama: bool = False, headers: Headers = ()) -> None:
    """The error as OpenAI's JSON, or Ollama's `{"error": "..."}` (on /api/*); Retry-After when it has one."""
    if error.retry_after is not None:
        headers = [*headers, (b"retry-after", str(max(1, round(error.retry_after))).encode())]
    await send_json(send, error.status, {"error": error.message} if ollama else openai_error(error), headers)


def sse_error_event(error: GatewayError) -> bytes:
    """An error as one server-sent event, for failures after a stream has started."""
    return b"data: " + orjson.dumps(openai_error(error)) + b"\n\n"


SSE_DONE = re.compile(rb"(?<![^\n])data: ?\[DONE\]")  # an OpenAI stream's last event, at a line's start


def sse_done_in(before: bytes, last: bytes) -> bool:
    """Whether the `data: [DONE]` line is in the last two parts sent, `before` and `last`, or split across
    them: a stream not cut into whole events goes out as the engine wrote it."""
    return SSE_DONE.search(before + last) is not None
