"""The gateway's connection transport: a response's head and body leave in one send()."""

from __future__ import annotations

import asyncio

import pytest

from servestack.gateway.protocol import CorkedTransport

pytestmark = pytest.mark.anyio


class RecordingTransport:
    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "written after close"
        self.sent.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str) -> str:
        return f"extra:{name}"


async def test_writes_in_one_tick_leave_together_and_later_ones_on_their_own() -> None:
    raw = RecordingTransport()
    corked = CorkedTransport(raw, asyncio.get_running_loop())  # type: ignore[arg-type]
    corked.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    corked.write(b"hi")
    assert raw.sent == []  # held until the end of this tick
    await asyncio.sleep(0)
    assert raw.sent == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi"]

    corked.write(b"data: 1\n\n")
    await asyncio.sleep(0)
    corked.write(b"data: 2\n\n")
    await asyncio.sleep(0)
    assert raw.sent[1:] == [b"data: 1\n\n", b"data: 2\n\n"]  # a stream's chunks are not held back
    assert corked.get_extra_info("peername") == "extra:peername"


async def test_close_sends_what_is_held_first_and_a_gone_client_gets_nothing() -> None:
    raw = RecordingTransport()
    corked = CorkedTransport(raw, asyncio.get_running_loop())  # type: ignore[arg-type]
    corked.write(b"last words")
    corked.close()
    assert raw.sent == [b"last words"] and raw.closed

    gone = RecordingTransport()
    corked = CorkedTransport(gone, asyncio.get_running_loop())  # type: ignore[arg-type]
    corked.write(b"too late")
    gone.closed = True  # the client disconnected within the tick
    await asyncio.sleep(0)
    assert gone.sent == []
