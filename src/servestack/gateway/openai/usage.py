"""Token counts read off the answers the gateway relays, without re-encoding them.

Whole answers: the last `"prompt_tokens"` / `"completion_tokens"` numbers in the body (the OpenAI
`usage` object, or SGLang's `meta_info`). Streams: `StreamTap` sits in the relay loop, remembers the
last chunk that carries token numbers (the `include_usage` chunk, or SGLang's cumulative
`meta_info`) and, when the gateway injected `stream_options.include_usage` itself, removes that
usage-only event so the client gets exactly the stream it asked for. Engines that never report
usage on a stream (llama-cpp-python) get an estimate, flagged as such; a client that asked such an
engine for `include_usage` gets that count as the last event before `[DONE]`, marked `estimated`.
"""

from __future__ import annotations

import re
import time
from typing import Any

import orjson

from servestack.asgi import SSE_DONE

PROMPT_KEY = b'"prompt_tokens"'
COMPLETION_KEY = b'"completion_tokens"'
_NUMBER = re.compile(rb"\s*:\s*(\d+)")
CHARS_PER_TOKEN = 4  # a rough figure for English text; only used for estimates, which are flagged


def last_int(buf: bytes, key: bytes) -> int | None:
    """The integer after the last `key":` in `buf`, or None."""
    at = buf.rfind(key)
    if at < 0:
        return None
    match = _NUMBER.match(buf, at + len(key))
    return int(match.group(1)) if match else None


def usage_of(body: bytes) -> tuple[int | None, int | None]:
    """(prompt, completion) tokens from a whole JSON answer."""
    if PROMPT_KEY not in body:
        return None, None
    return last_int(body, PROMPT_KEY), last_int(body, COMPLETION_KEY)


class CountedUsage:
    """What the gateway's own usage event needs: the prompt's estimated tokens, and the route's kind."""

    __slots__ = ("chat", "prompt_tokens")

    def __init__(self, prompt_tokens: int, chat: bool) -> None:
        self.prompt_tokens = prompt_tokens
        self.chat = chat


class StreamTap:
    """Watches a server-sent-event stream chunk by chunk for token usage."""

    __slots__ = ("_first", "_last", "_pending", "counted_usage", "drop_usage_event", "dropped", "events")

    def __init__(self, *, drop_usage_event: bool, counted_usage: CountedUsage | None = None) -> None:
        """`counted_usage`: send the client a usage event of the gateway's own count before `[DONE]`."""
        self.drop_usage_event = drop_usage_event
        self.counted_usage = counted_usage
        self.events = 0
        self.dropped = False
        self._pending = b""
        self._last = b""
        self._first = b""  # the first event, whose id and model the counted usage event repeats

    def feed(self, chunk: bytes) -> bytes:
        """The bytes to forward for `chunk`: whole events only (a partial event waits for its end)."""
        if self._pending:
            chunk = self._pending + chunk
        end = _events_end(chunk)
        if end < len(chunk):
            self._pending = chunk[end:]
            chunk = chunk[:end]
        else:
            self._pending = b""
        if not chunk:
            return chunk
        self.events += chunk.count(b"data:")
        if b'_tokens"' in chunk:
            self._last = chunk
            if self.drop_usage_event and (b'"choices":[]' in chunk or b'"choices": []' in chunk):
                chunk = self._drop_usage_event(chunk)
        if self.counted_usage is not None:
            self._first = self._first or chunk
            if done := SSE_DONE.search(chunk):
                chunk = chunk[: done.start()] + self._counted_usage_event() + chunk[done.start() :]
        return chunk

    def close(self) -> bytes:
        """Whatever is left of an unterminated last event (forwarded as it came)."""
        rest, self._pending = self._pending, b""
        return rest

    def usage(self) -> tuple[int | None, int | None]:
        if not self._last:
            return None, None
        return last_int(self._last, PROMPT_KEY), last_int(self._last, COMPLETION_KEY)

    def _counted_usage_event(self) -> bytes:
        assert self.counted_usage is not None
        head: dict[str, Any] = {}
        try:
            first = orjson.loads(self._first.split(b"\n", 1)[0].removeprefix(b"data:").strip())
            head = {k: first[k] for k in ("id", "object", "created", "model") if k in first}
        except (orjson.JSONDecodeError, TypeError):
            pass
        prompt, chat = self.counted_usage.prompt_tokens, self.counted_usage.chat
        completion = estimate_completion_tokens(self.events, "/chat/completions" if chat else "/completions")
        event = {
            "id": head.get("id", ""),
            "object": head.get("object", "chat.completion.chunk" if chat else "text_completion"),
            "created": head.get("created", int(time.time())),
            "model": head.get("model", ""),
            "choices": [],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
                "estimated": True,  # counted by the gateway: the engine reports no usage on streams
            },
        }
        return b"data: " + orjson.dumps(event) + b"\n\n"

    def _drop_usage_event(self, chunk: bytes) -> bytes:
        kept = []
        for event in _split_events(chunk):
            if b'_tokens"' in event and (b'"choices":[]' in event or b'"choices": []' in event):
                self.dropped = True
                continue
            kept.append(event)
        return b"".join(kept)


def _events_end(chunk: bytes) -> int:
    """The end of the last complete event (after its blank line) in `chunk`; 0 when there is none."""
    lf = chunk.rfind(b"\n\n")
    crlf = chunk.rfind(b"\r\n\r\n")
    return max(lf + 2 if lf >= 0 else 0, crlf + 4 if crlf >= 0 else 0)


def _split_events(chunk: bytes) -> list[bytes]:
    """Events of `chunk`, each with its terminating blank line."""
    events = []
    start = 0
    while start < len(chunk):
        end = _first_end(chunk, start)
        if end < 0:
            events.append(chunk[start:])
            break
        events.append(chunk[start:end])
        start = end
    return events


def _first_end(chunk: bytes, start: int) -> int:
    lf = chunk.find(b"\n\n", start)
    crlf = chunk.find(b"\r\n\r\n", start)
    ends = [e for e in (lf + 2 if lf >= 0 else -1, crlf + 4 if crlf >= 0 else -1) if e >= 0]
    return min(ends) if ends else -1


def estimate_prompt_tokens(payload: dict[str, Any]) -> int:
    """A rough prompt size from the request text, for engines that report no usage on streams."""
    chars = 0
    messages = payload.get("messages")
    if isinstance(messages, list):
        for message in messages:
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, str):
                chars += len(content)
            elif isinstance(content, list):
                chars += sum(len(p.get("text", "")) for p in content if isinstance(p, dict))
    prompt = payload.get("prompt")
    if isinstance(prompt, str):
        chars += len(prompt)
    elif isinstance(prompt, list):
        chars += sum(len(p) for p in prompt if isinstance(p, str))
    return max(1, round(chars / CHARS_PER_TOKEN))


def estimate_completion_tokens(events: int, path: str) -> int:
    """Streamed tokens from the number of `data:` events: one token per event, less the framing.

    llama-cpp-python sends one event per token, plus a role-only first event (chat streams), a
    finish event and `[DONE]`.
    """
    framing = 3 if path.endswith("/chat/completions") else 2
    return max(0, events - framing)
