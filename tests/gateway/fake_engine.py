"""A small OpenAI-like engine for gateway tests: exact canned bytes, slow streams, dying streams."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

from aiohttp import web

# Odd spacing on purpose: a relay that re-encodes JSON would change these bytes.
CHAT_BODY = (
    b'{"id":"c1", "object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant",'
    b'"content":"Paris"},"finish_reason":"stop"}],   '
    b'"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}'
)
STREAM_CHUNKS = [
    b'data: {"id":"c2","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hel"}}]}\n\n',
    b'data: {"id":"c2","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"lo"}}]}\n\n',
    b"data: [DONE]\n\n",
]

FLOOD_EVENT = b"data: " + b"x" * (64 * 1024 - 8) + b"\n\n"
FLOOD_EVENTS = 2048  # 128 MiB, written as fast as the gateway takes them


@dataclass
class FakeEngine:
    """Records what it received; `mode` picks the behaviour of the next streams."""

    received: list[dict[str, object]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    stream_cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    mode: str = "normal"  # normal | slow | die | flood
    flooded: int = 0  # bytes a flood wrote so far (each write waits while the gateway reads no more)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.generate)
        app.router.add_post("/v1/completions", self.generate)
        return app

    async def generate(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.received.append(body)
        self.headers.append(dict(request.headers))
        if not body.get("stream"):
            return web.Response(body=CHAT_BODY, content_type="application/json")
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        try:
            if self.mode == "slow":
                for i in range(600):
                    await response.write(f"data: {json.dumps({'n': i})}\n\n".encode())
                    await asyncio.sleep(0.05)
            elif self.mode == "flood":
                for _ in range(FLOOD_EVENTS):
                    await response.write(FLOOD_EVENT)
                    self.flooded += len(FLOOD_EVENT)
            elif self.mode == "die":
                await response.write(STREAM_CHUNKS[0])
                assert request.transport is not None
                request.transport.close()  # the engine crashes mid-stream
                return response
            else:
                for chunk in STREAM_CHUNKS:
                    await response.write(chunk)
        except (asyncio.CancelledError, ConnectionResetError):
            self.stream_cancelled.set()
            raise
        await response.write_eof()
        return response


async def start_fake_engine(engine: FakeEngine) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(engine.app(), handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"
