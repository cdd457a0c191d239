"""`python drip_upstream.py PORT [INTERVAL]`: a slow-drip engine for bench/streams.py.

Answers every streamed POST with an endless OpenAI-style SSE stream: one chunk at once, then one every INTERVAL
seconds (default 1), each stamped with `time.monotonic()` when written (one clock for every process on
the machine) so the client can tell how long a proxy held it. The stream ends when the client goes.
Any other POST gets a short chat completion, GET answers `{}` (health checks), /v1/models lists `sim`.

Raw asyncio protocols on uvloop and one timer for every stream (a wheel of 5 ms slots, each stream in
the slot of its own phase) keep it cheap enough not to be what limits a run of ten thousand streams.
"""

from __future__ import annotations

import asyncio
import re
import sys
import time

import uvloop

TICK = 0.005
HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\n\r\n"
)
EVENT = (
    b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":0,"model":"sim",'
    b'"choices":[{"index":0,"delta":{"content":" word"},"finish_reason":null}],"t":%.6f}\n\n'
)
MODELS = b'{"object":"list","data":[{"id":"sim","object":"model","owned_by":"bench"}]}'
ANSWER = (
    b'{"id":"chatcmpl-bench","object":"chat.completion","created":0,"model":"sim","choices":[{"index":0,'
    b'"message":{"role":"assistant","content":"word"},"finish_reason":"stop"}],'
    b'"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}'
)
STREAMED = re.compile(rb'"stream"\s*:\s*true')


class Wheel:
    """Streams due in each 5 ms slot; one timer drives them all."""

    def __init__(self, loop: asyncio.AbstractEventLoop, interval: float) -> None:
        self.loop = loop
        self.step = max(1, round(interval / TICK))
        self.slots: dict[int, list[Stream]] = {}
        self.tick = int(loop.time() / TICK)
        loop.call_at((self.tick + 1) * TICK, self.turn)

    def add(self, stream: Stream) -> None:
        self.slots.setdefault(self.tick + self.step, []).append(stream)

    def turn(self) -> None:
        now_tick = int(self.loop.time() / TICK)
        stamp = time.monotonic()
        while self.tick < now_tick:
            self.tick += 1
            due = self.slots.pop(self.tick, None)
            if not due:
                continue
            later = self.slots.setdefault(self.tick + self.step, [])
            for stream in due:
                if stream.send(stamp):
                    later.append(stream)
        self.loop.call_at((self.tick + 1) * TICK, self.turn)


class Stream(asyncio.Protocol):
    def __init__(self, wheel: Wheel) -> None:
        self.wheel = wheel
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.streaming = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.streaming:
            return
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self.buffer[:end].decode("latin-1")
        length = 0
        for line in head.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        if len(self.buffer) < end + 4 + length:
            return
        body = self.buffer[end + 4 : end + 4 + length]
        rest = self.buffer[end + 4 + length :]
        self.buffer = b""
        method, path = head.split(" ", 2)[:2]
        if method == "POST" and STREAMED.search(body):
            self.streaming = True
            assert self.transport is not None
            self.transport.write(HEAD)
            self.send(time.monotonic())
            self.wheel.add(self)
            return
        answer = ANSWER if method == "POST" else MODELS if path.startswith("/v1/models") else b"{}"
        assert self.transport is not None
        self.transport.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(answer), answer)
        )
        if rest:
            self.data_received(rest)

    def send(self, stamp: float) -> bool:
        transport = self.transport
        if transport is None or transport.is_closing():
            return False
        event = EVENT % stamp
        transport.write(b"%x\r\n%s\r\n" % (len(event), event))
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


async def serve(port: int, interval: float) -> None:
    loop = asyncio.get_running_loop()
    wheel = Wheel(loop, interval)
    server = await loop.create_server(lambda: Stream(wheel), "127.0.0.1", port, backlog=4096)
    print(f"listening on {port}", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(serve(int(sys.argv[1]), float(sys.argv[2]) if len(sys.argv) > 2 else 1.0))
