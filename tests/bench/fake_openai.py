"""A small OpenAI-compatible server for bench tests, served from a thread so a CLI subprocess can reach it.

It answers every chat or completion request with `max_tokens` words; the usage says
`completion_tokens = max_tokens` and `prompt_tokens` = the words of the prompt, so tests can check
that the bench counts tokens from `usage`. `usage=False` leaves usage out; `fail_every=k` answers
every k-th request with HTTP 500; `api_key="k"` refuses requests without `Authorization: Bearer k` (401).
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web


@dataclass
class FakeOpenAI:
    usage: bool = True
    fail_every: int = 0
    api_key: str | None = None
    received: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""
    _loop: asyncio.AbstractEventLoop | None = None
    _runner: web.AppRunner | None = None
    _thread: threading.Thread | None = None

    def start(self) -> FakeOpenAI:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(ready,), daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the fake server did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    def _serve(self, ready: threading.Event) -> None:
        loop = self._loop = asyncio.new_event_loop()
        app = web.Application(middlewares=[self._auth])
        app.router.add_get("/v1/models", self.models)
        app.router.add_post("/v1/chat/completions", self.generate)
        app.router.add_post("/v1/completions", self.generate)
        self._runner = web.AppRunner(app)
        loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        loop.run_until_complete(site.start())
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        ready.set()
        loop.run_forever()
        loop.close()

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if self.api_key is not None and request.headers.get("Authorization") != f"Bearer {self.api_key}":
            error = {"message": "Invalid API key", "type": "authentication_error", "code": "invalid_api_key"}
            return web.json_response({"error": error}, status=401)
        response: web.StreamResponse = await handler(request)
        return response

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "fake-model", "object": "model"}]})

    async def generate(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.received.append(body)
        if self.fail_every and len(self.received) % self.fail_every == 0:
            return web.json_response({"error": {"message": "boom", "type": "server_error"}}, status=500)
        chat = "messages" in body
        prompt = " ".join(m["content"] for m in body["messages"]) if chat else body["prompt"]
        count = body.get("max_tokens", 16)
        words = [f"w{i}" for i in range(count)]
        usage = {"prompt_tokens": len(prompt.split()), "completion_tokens": count, "total_tokens": 0}
        if not body.get("stream"):
            text = " ".join(words)
            choice = {"message": {"role": "assistant", "content": text}} if chat else {"text": text}
            answer: dict[str, Any] = {"choices": [{"index": 0, **choice, "finish_reason": "length"}]}
            if self.usage:
                answer["usage"] = usage
            return web.json_response(answer)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for i, word in enumerate(words):
            piece = word if i == 0 else " " + word
            delta = {"delta": {"content": piece}} if chat else {"text": piece}
            await response.write(b"data: " + orjson.dumps({"choices": [{"index": 0, **delta}]}) + b"\r\n\r\n")
        include = (body.get("stream_options") or {}).get("include_usage")
        if self.usage and include:
            await response.write(b"data: " + orjson.dumps({"choices": [], "usage": usage}) + b"\r\n\r\n")
        await response.write(b"data: [DONE]\r\n\r\n")
        await response.write_eof()
        return response
