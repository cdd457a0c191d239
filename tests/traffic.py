"""Bounded traffic through the gateway for the cluster and chaos tests: requests at a fixed concurrency until told
to stop, each judged as a user would (an answer, a well-formed OpenAI error, or an SSE stream ending in
[DONE] or an error event), none allowed to hang."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass, field

import aiohttp

REQUEST_TIMEOUT = 30.0  # a request still open after this counts as a hang
STREAM_EVERY = 10  # one request in ten streams


@dataclass
class Tally:
    sent: int = 0
    streams: int = 0
    ok: int = 0
    streams_ok: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    malformed: list[str] = field(default_factory=list)
    hangs: int = 0
    fingerprints: Counter[str] = field(default_factory=Counter)  # the replicas that answered, by system_fingerprint
    max_latency: float = 0.0  # seconds, when the sender records it

    @property
    def non_streaming(self) -> int:
        return self.sent - self.streams


async def one_request(
    session: aiohttp.ClientSession, url: str, model: str, i: int, tally: Tally, stream_tokens: int = 8
) -> None:
    """Request `i`: a whole answer of 8 tokens, or (one in ten) a stream of `stream_tokens`."""
    stream = i % STREAM_EVERY == STREAM_EVERY - 1
    body: dict[str, object] = {"model": model, "messages": [{"role": "user", "content": f"q{i}"}], "max_tokens": 8}
    if stream:
        body |= {"stream": True, "max_tokens": stream_tokens}
        tally.streams += 1
    tally.sent += 1
    try:
        async with asyncio.timeout(REQUEST_TIMEOUT), session.post(url, json=body) as resp:
            raw = await resp.read()
    except TimeoutError:
        tally.hangs += 1
        return
    except aiohttp.ClientError as exc:
        tally.malformed.append(f"connection error {exc!r}")
        return
    judge(resp.status, raw, stream, tally)


def judge(status: int, raw: bytes, stream: bool, tally: Tally) -> None:
    if status != 200:
        try:
            error = json.loads(raw)["error"]
            assert {"message", "type", "param", "code"} <= set(error)
            tally.failures[f"HTTP {status} {error['code']}"] += 1
        except (ValueError, KeyError, TypeError, AssertionError):
            tally.malformed.append(f"HTTP {status}: {raw[:200]!r}")
        return
    if not stream:
        tally.ok += 1
        tally.fingerprints[json.loads(raw).get("system_fingerprint", "")] += 1
        return
    events = [e.removeprefix(b"data: ") for e in raw.split(b"\n\n") if e.startswith(b"data: ")]
    if events and events[-1] == b"[DONE]":
        tally.streams_ok += 1
    elif events and b'"error"' in events[-1]:
        tally.failures[f"stream {json.loads(events[-1])['error']['code']}"] += 1
    else:
        tally.malformed.append(f"stream ended without [DONE] or an error event: {raw[-200:]!r}")


async def traffic(
    url: str, model: str, stop: asyncio.Event, tally: Tally, *, concurrency: int = 8, stream_tokens: int = 8
) -> None:
    """Requests to `model`, `concurrency` at a time, until `stop` is set (and at most 10 minutes)."""
    deadline = time.monotonic() + 600
    counter = iter(range(10**9))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def worker() -> None:
            while not stop.is_set() and time.monotonic() < deadline:
                await one_request(session, url, model, next(counter), tally, stream_tokens)

        await asyncio.gather(*(worker() for _ in range(concurrency)))


async def requests(url: str, model: str, count: int) -> Tally:
    """`count` requests, one after another (each reaching the next replica under round robin)."""
    tally = Tally()
    async with aiohttp.ClientSession() as session:
        for i in range(count):
            await one_request(session, url, model, i * STREAM_EVERY, tally)  # never a stream
    return tally
