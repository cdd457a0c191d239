"""The client connection's writes: one send() per answer's first tick, and a stream's parts written straight.

One write: uvicorn writes a response's head and its body separately, two send() calls where one
would do; on loopback each costs ~20 µs of the gateway's ~160 µs per request. The connection's
transport is corked when a request begins, and its first write holds the rest of that event-loop
tick: what else is written in that tick (the body after the head, a stream's first chunk) goes out
with it. A stream's later chunks arrive in later ticks and go out as they come, uncorked.

A stream's body parts may also skip `send` (CycleChunkWriter, offered in the request's scope): once
its answer has started, the relay writes each part as it arrives, in the engine connection's callback,
framed as uvicorn frames it. The callback data path (lane_call.py) writes its own heads: `response_head`.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, RequestResponseCycle

from servestack.gateway.relay.connection import Response
from servestack.gateway.relay.headers import relayed_headers


class CorkedTransport:
    """A transport that holds a response's first writes until the end of their event-loop tick, and sends
    them in one send(); once that tick is over, writes go straight out until `cork()` is called again."""

    __slots__ = ("_corked", "_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] = []
        self._corked = True

    @property
    def raw(self) -> asyncio.Transport:
        return self._transport

    def cork(self) -> None:
        self._corked = True

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def write(self, data: bytes) -> None:
        if self._corked:
            if not self._held:
                self._loop.call_soon(self.flush)
            self._held.append(data)
        elif not self._transport.is_closing():  # the client may be gone
            self._transport.write(data)

    def flush(self) -> None:
        self._corked = False
        held = self._held
        if held:
            self._held = []
            if not self._transport.is_closing():  # the client may have gone within the tick
                self._transport.write(held[0] if len(held) == 1 else b"".join(held))

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()


class CycleChunkWriter:
    """The `ChunkWriter` (asgi.py) of one request: writes what uvicorn's `send` would for a body part."""

    __slots__ = ("_cycle", "_transport")

    def __init__(self, cycle: RequestResponseCycle, transport: CorkedTransport) -> None:
        self._cycle = cycle
        self._transport = transport

    def usable(self) -> bool:
        cycle = self._cycle
        return cycle.response_started and cycle.chunked_encoding is True and not cycle.response_complete

    def write(self, data: bytes) -> bool:
        cycle = self._cycle
        if not cycle.disconnected:
            self._transport.write(chunk(data))
        return not cycle.flow.write_paused

    async def drain(self) -> None:
        cycle = self._cycle
        if cycle.flow.write_paused and not cycle.disconnected:
            await cycle.flow.drain()


def chunk(data: bytes) -> bytes:
    """`data` as one part of a chunked HTTP/1.1 body."""
    return b"%x\r\n%s\r\n" % (len(data), data)


class Flow:
    """uvicorn's flow control (what its request cycle uses of it), less the event a writer waits on until
    writing first pauses: most connections never pause, and an Event (with its deque) on each of ten
    thousand is work for the collector."""

    __slots__ = ("_transport", "_writable", "read_paused", "write_paused")

    def __init__(self, transport: CorkedTransport) -> None:
        self._transport = transport
        self.read_paused = False
        self.write_paused = False
        self._writable: asyncio.Event | None = None

    async def drain(self) -> None:
        if self._writable is not None:
            await self._writable.wait()

    def pause_reading(self) -> None:
        if not self.read_paused:
            self.read_paused = True
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if self.read_paused:
            self.read_paused = False
            self._transport.resume_reading()

    def pause_writing(self) -> None:
        if not self.write_paused:
            self.write_paused = True
            if self._writable is None:
                self._writable = asyncio.Event()
            else:
                self._writable.clear()

    def resume_writing(self) -> None:
        if self.write_paused:
            self.write_paused = False
            assert self._writable is not None
            self._writable.set()


def response_head(response: Response, length: int | None, request_id: str, *, keep_alive: bool) -> bytes:
    """The head relaying the engine's `response`: its body `length` long, or chunked (None)."""
    lines = [STATUS_LINE[response.status]]
    lines += [b"%s: %s\r\n" % header for header in relayed_headers(response)]
    lines.append(b"transfer-encoding: chunked\r\n" if length is None else b"content-length: %d\r\n" % length)
    lines.append(b"x-request-id: %s\r\n" % request_id.encode())
    if not keep_alive:
        lines.append(b"connection: close\r\n")
    lines.append(b"\r\n")
    return b"".join(lines)
