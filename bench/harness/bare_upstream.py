"""The bare upstream: the smallest aiohttp server that answers chat completions at once.

It is the reference the issue's baseline was measured with, kept beside the simulator's instant
mode: `python bench/harness/bare_upstream.py PORT`. Whole answers and streams are canned bytes, so
the server does as little as an HTTP server can per request.
"""

from __future__ import annotations

import sys

import orjson
from aiohttp import web

TOKENS = 16
WHOLE = orjson.dumps(
    {
        "id": "chatcmpl-bare",
        "object": "chat.completion",
        "model": "sim",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": " ".join(["hi"] * TOKENS)}}],
        "usage": {"prompt_tokens": 8, "completion_tokens": TOKENS, "total_tokens": 8 + TOKENS},
    }
)
CHUNK = (
    b'data: {"id":"chatcmpl-bare","object":"chat.completion.chunk",'
    b'"choices":[{"index":0,"delta":{"content":" hi"}}]}\n\n'
)
STREAM = CHUNK * TOKENS + b"data: [DONE]\n\n"


async def chat(request: web.Request) -> web.StreamResponse:
    body = await request.read()
    if b'"stream":true' not in body.replace(b" ", b""):
        return web.Response(body=WHOLE, content_type="application/json")
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    await response.write(STREAM)
    await response.write_eof()
    return response


async def health(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def main() -> None:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/health", health)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None, backlog=4096)


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    main()
