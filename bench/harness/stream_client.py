"""The client side of bench/streams.py: thousands of SSE streams held open through one proxy.

Raw asyncio protocols (uvloop when installed), one per stream: the request goes out when the
connection is made, the answer's status is checked, and every chunk's stamp (the upstream's
`time.monotonic()` when it wrote it, drip_upstream.py) is read with one regex over what arrived, so
the delay each chunk spent in the proxy is known without parsing JSON. A stream counts as open once
its first chunk is in; at most `opening` streams are being opened at a time (a burst, not a trickle).
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field
from typing import cast

STAMP = re.compile(rb'"t":([0-9.]+)\}')


@dataclass
class StreamRun:
    """What the streams of one run saw."""

    streams: int
    opened: int = 0
    failed: int = 0  # did not open: refused, reset, a status other than 200
    cut: int = 0  # opened, then ended by the proxy while the client still listened
    chunks: int = 0  # chunks received (first ones included)
    measuring: bool = False  # whether chunk delays are recorded now
    delays: list[float] = field(default_factory=list)  # seconds, while measuring
    statuses: dict[str, int] = field(default_factory=dict)  # why streams failed
    closing: bool = False
    all_open: asyncio.Future[None] | None = None

    @property
    def errors(self) -> int:
        return self.failed + self.cut

    def settled(self) -> None:
        if self.opened + self.failed >= self.streams and self.all_open is not None and not self.all_open.done():
            self.all_open.set_result(None)

    def fail(self, why: str) -> None:
        self.failed += 1
        self.statuses[why] = self.statuses.get(why, 0) + 1
        self.settled()


class StreamProtocol(asyncio.Protocol):
    __slots__ = ("_decided", "_gate", "_head", "_opened", "_request", "_run", "_tail", "transport")

    def __init__(self, run: StreamRun, request: bytes, gate: asyncio.Semaphore) -> None:
        self._run = run
        self._request = request
        self._gate = gate  # a slot among the streams being opened, given back once this one opened or failed
        self._decided = False
        self._head = False
        self._opened = False
        self._tail = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        run = self._run
        if not self._head:
            if not data.startswith(b"HTTP/1.1 200"):
                self.give_up(data[:12].decode("latin-1", "replace") or "empty answer")
                return
            self._head = True
        buffer = self._tail + data if self._tail else data
        stamps = STAMP.findall(buffer)
        end = buffer.rfind(b"\n\n")
        self._tail = buffer[end + 2 :] if end >= 0 else buffer[-512:]
        if not stamps:
            return
        run.chunks += len(stamps)
        if run.measuring:
            run.delays.extend(now - float(stamp) for stamp in stamps)
        if not self._decided:
            self._decided = self._opened = True
            run.opened += 1
            self._gate.release()
            run.settled()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._opened:
            if not self._run.closing:
                self._run.cut += 1
        else:
            self.give_up(f"closed before its first chunk ({type(exc).__name__ if exc else 'EOF'})")

    def give_up(self, why: str) -> None:
        if not self._decided:
            self._decided = True
            self._gate.release()
            self._run.fail(why)
        self.close()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def open_streams(
    host: str, port: int, request: bytes, run: StreamRun, *, opening: int
) -> tuple[list[StreamProtocol], float]:
    """Open `run.streams` streams, at most `opening` at a time; the protocols, and seconds until all were open."""
    loop = asyncio.get_running_loop()
    run.all_open = loop.create_future()
    gate = asyncio.Semaphore(opening)
    protocols: list[StreamProtocol] = []
    began = time.monotonic()

    async def connect(protocol: StreamProtocol) -> None:
        try:
            await loop.create_connection(lambda: protocol, host, port)
        except OSError as exc:
            protocol.give_up(f"connect: {exc.strerror or exc}")

    tasks = []
    for _ in range(run.streams):
        await gate.acquire()
        protocol = StreamProtocol(run, request, gate)
        protocols.append(protocol)
        tasks.append(loop.create_task(connect(protocol)))
    await run.all_open
    await asyncio.gather(*tasks)
    return protocols, time.monotonic() - began


def chat_request(path: str, host: str, port: int, api_key: str | None = None) -> bytes:
    body = b'{"model":"sim","stream":true,"messages":[{"role":"user","content":"Tell me a long story."}]}'
    auth = f"Authorization: Bearer {api_key}\r\n".encode() if api_key else b""
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n".encode()
        + auth
        + b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
