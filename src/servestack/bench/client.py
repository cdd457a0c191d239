"""Sending one request and timing its answer: a `Sample` per request.

Kept lean because the same code drives thousands of requests per second in the gateway overhead
benchmark: one pooled aiohttp session, request headers set once on the session, the body encoded
once, and for streams one `orjson.loads` per server-sent event. Token counts come from the
answer's `usage` (streams ask for it with `stream_options.include_usage`); when a server sends no
usage, a stream's output tokens are its content chunks and a whole answer's are its words, and the
sample says so (`usage=False`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import aiohttp
import orjson
from yarl import URL

from servestack.bench.workload import Conversation

perf_counter = time.perf_counter


@dataclass(slots=True)
class Sample:
    """One request's timings (seconds, from `time.perf_counter`) and token counts."""

    start: float
    end: float = 0.0
    ttft: float | None = None  # until the first content; for a whole answer, until the answer
    itl: list[float] = field(default_factory=list)  # gaps between content chunks of a stream
    prompt_tokens: int = 0
    output_tokens: int = 0
    chunks: int = 0
    usage: bool = False  # token counts came from the server's usage
    error: str | None = None  # the kind: "HTTP 503", "connect", "timeout", "disconnected", …
    detail: str = ""
    text: str | None = None  # the answer, kept only when a later turn needs it

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def latency(self) -> float:
        return self.end - self.start

    @property
    def tpot(self) -> float | None:
        """Time per output token after the first one."""
        if self.ttft is None or self.output_tokens < 2:
            return None
        return (self.latency - self.ttft) / (self.output_tokens - 1)


@dataclass(frozen=True)
class Target:
    """Where requests go and how they are shaped."""

    url: str  # the full endpoint URL (…/v1/chat/completions or …/v1/completions)
    model: str
    stream: bool = True
    api_key: str | None = None

    @cached_property
    def endpoint(self) -> URL:
        """The URL parsed once: aiohttp would parse a string on every request."""
        return URL(self.url)

    @property
    def chat(self) -> bool:
        return self.url.endswith("/chat/completions")

    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def body(self, messages: list[dict[str, Any]], max_tokens: int) -> bytes:
        request: dict[str, Any] = {"model": self.model, "max_tokens": max_tokens}
        if self.chat:
            request["messages"] = messages
        else:
            request["prompt"] = "\n".join(str(m.get("content", "")) for m in messages)
        if self.stream:
            request["stream"] = True
            request["stream_options"] = {"include_usage": True}
        return orjson.dumps(request)


class ConversationState:
    """A conversation being sent turn by turn; later turns carry the earlier answers."""

    __slots__ = ("conversation", "messages", "turn")

    def __init__(self, conversation: Conversation) -> None:
        self.conversation = conversation
        self.turn = 0
        self.messages: list[dict[str, Any]] = list(conversation.history)
        if conversation.system is not None:
            self.messages.insert(0, {"role": "system", "content": conversation.system})

    @property
    def finished(self) -> bool:
        return self.turn >= len(self.conversation.turns)

    @property
    def keeps_answers(self) -> bool:
        """Whether the answer of the current turn is needed by a later one."""
        return self.turn + 1 < len(self.conversation.turns)

    def next_body(self, target: Target) -> bytes:
        turn = self.conversation.turns[self.turn]
        self.messages.append({"role": "user", "content": turn.text})
        return target.body(self.messages, turn.max_tokens)

    def answered(self, text: str | None) -> None:
        self.messages.append({"role": "assistant", "content": text or ""})
        self.turn += 1


def make_session(target: Target, timeout: float) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=None, force_close=False)
    return aiohttp.ClientSession(
        connector=connector,
        headers=target.headers(),
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=timeout),
        skip_auto_headers=("User-Agent",),
        auto_decompress=False,
    )


async def send_request(session: aiohttp.ClientSession, target: Target, body: bytes, *, keep_text: bool) -> Sample:
    """Send one request and time its answer; failures become the sample's `error`, never an exception."""
    sample = Sample(start=perf_counter())
    try:
        async with session.post(target.endpoint, data=body) as resp:
            if resp.status != 200:
                _failed(sample, f"HTTP {resp.status}", (await resp.read())[:300].decode(errors="replace"))
            elif target.stream:
                await _read_stream(resp, sample, keep_text)
            else:
                _read_whole(await resp.read(), sample, keep_text)
    except aiohttp.ClientConnectorError as exc:
        _failed(sample, "connect", str(exc))
    except TimeoutError:
        _failed(sample, "timeout", "no complete answer within the request timeout")
    except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError) as exc:
        _failed(sample, "disconnected", str(exc) or type(exc).__name__)
    except aiohttp.ClientError as exc:
        _failed(sample, type(exc).__name__, str(exc))
    sample.end = perf_counter()
    return sample


def _failed(sample: Sample, kind: str, detail: str) -> None:
    sample.error = kind
    sample.detail = detail


def _read_whole(payload: bytes, sample: Sample, keep_text: bool) -> None:
    sample.ttft = perf_counter() - sample.start
    try:
        answer = orjson.loads(payload)
        choice = answer["choices"][0]
        message = choice.get("message")
        text = message.get("content") if message else choice.get("text")
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, AttributeError):
        _failed(sample, "bad answer", payload[:300].decode(errors="replace"))
        return
    text = text or ""
    if keep_text:
        sample.text = text
    if not _take_usage(answer.get("usage"), sample):
        sample.output_tokens = len(text.split())


async def _read_stream(resp: aiohttp.ClientResponse, sample: Sample, keep_text: bool) -> None:
    pieces: list[str] | None = [] if keep_text else None
    pending = b""
    last = 0.0
    async for data in resp.content.iter_any():
        now = perf_counter()
        lines = (pending + data).split(b"\n") if pending else data.split(b"\n")
        pending = lines.pop()
        for line in lines:
            if not line.startswith(b"data:"):
                continue
            payload = line[5:].strip()
            if payload == b"[DONE]":
                continue
            piece = _read_event(payload, sample)
            if not piece:
                continue
            if sample.ttft is None:
                sample.ttft = now - sample.start
            else:
                sample.itl.append(now - last)
            last = now
            sample.chunks += 1
            if pieces is not None:
                pieces.append(piece)
    if sample.error is None and not sample.usage:
        sample.output_tokens = sample.chunks
        if not sample.chunks:
            _failed(sample, "empty answer", "the stream ended without any content")
    if pieces is not None:
        sample.text = "".join(pieces)


def _read_event(payload: bytes, sample: Sample) -> str | None:
    """The content an event carries (None if none); usage and error events update the sample."""
    try:
        event = orjson.loads(payload)
    except orjson.JSONDecodeError:
        _failed(sample, "bad answer", payload[:300].decode(errors="replace"))
        return None
    if not isinstance(event, dict):
        return None
    if event.get("error"):
        _failed(sample, "error event", orjson.dumps(event["error"])[:300].decode())
        return None
    _take_usage(event.get("usage"), sample)
    for choice in event.get("choices") or ():
        delta = choice.get("delta")
        piece = (delta.get("content") or delta.get("reasoning_content")) if delta else choice.get("text")
        if piece:
            return str(piece)
    return None


def _take_usage(usage: Any, sample: Sample) -> bool:
    if not isinstance(usage, dict) or "completion_tokens" not in usage:
        return False
    sample.usage = True
    sample.prompt_tokens = int(usage.get("prompt_tokens") or 0)
    sample.output_tokens = int(usage["completion_tokens"] or 0)
    return True
