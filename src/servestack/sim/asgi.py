"""Raw ASGI plumbing for the simulator: reading bodies, writing JSON and errors, noticing disconnects.

The simulator is a plain ASGI callable under uvicorn (httptools, uvloop): measured against
aiohttp.web on this kind of machine it answers about a third more requests per second, and in
instant mode it must outrun the gateways it is used to measure.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, MutableMapping
from typing import Any

import orjson

from servestack.errors import BadRequest, GatewayError, PayloadTooLarge

Message = MutableMapping[str, Any]
Send = Callable[[Message], Awaitable[None]]
Receive = Callable[[], Awaitable[Message]]
Scope = MutableMapping[str, Any]
Headers = list[tuple[bytes, bytes]]

MAX_BODY_BYTES = 64 * 1024 * 1024


async def read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise BadRequest("the client disconnected before sending the whole body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise PayloadTooLarge(f"request body is larger than {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def send_bytes(send: Send, status: int, body: bytes, headers: Headers) -> None:
    await send(
        {"type": "http.response.start", "status": status, "headers": [*headers, (b"content-length", b"%d" % len(body))]}
    )
    await send({"type": "http.response.body", "body": body})


async def send_json(send: Send, status: int, payload: object, headers: Headers) -> None:
    await send_bytes(send, status, orjson.dumps(payload), [(b"content-type", b"application/json"), *headers])


async def send_error(send: Send, error: GatewayError, headers: Headers) -> None:
    body = {"error": {"message": error.message, "type": error.type, "param": error.param, "code": error.code}}
    await send_json(send, error.status, body, headers)


async def until_disconnect(receive: Receive) -> None:
    """Return when the client goes away (or, under uvicorn, once the response is complete)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def cancel_on_disconnect(work: Coroutine[Any, Any, None], receive: Receive) -> None:
    """Run `work` until it ends or the client disconnects; a disconnect cancels it (freeing its slot)."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(until_disconnect(receive))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pending in (task, watcher):
            if not pending.done():
                pending.cancel()
        await asyncio.gather(task, watcher, return_exceptions=True)
    if not task.cancelled() and (error := task.exception()) is not None:
        raise error
