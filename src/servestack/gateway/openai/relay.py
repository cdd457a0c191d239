"""The byte-for-byte relay: the engine's answer passed on untouched (OpenAI's routes, SGLang's /generate).

Whole answers are read whole and sent with their status and content type; streams are sent chunk by
chunk as they arrive, the answer starting with the first chunk (until then a failure can still be
retried elsewhere); after it, each chunk goes from the engine connection's callback straight to the
client's when the server offers a writer (asgi.ChunkWriter): no task switch and no message per chunk.
The request is shaped for each replica tried (attempt.py); when the gateway counts tokens, they are
read off the answer (usage.py): a whole answer's `usage`, a stream's usage chunk (the
tap removes the one the gateway asked for), or an estimate, flagged as such. A stream that fails after
it began ends with an error event, the only way left to tell the client.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from servestack.asgi import Send, send_bytes, sse_error_event
from servestack.errors import GatewayError, UpstreamError
from servestack.gateway.fleet.endpoint import Endpoint
from servestack.gateway.openai.attempt import prepare_attempt
from servestack.gateway.openai.usage import (
    StreamTap,
    estimate_completion_tokens,
    estimate_prompt_tokens,
    usage_of,
)
from servestack.gateway.relay.exchange import Exchange
from servestack.gateway.relay.upstream import Answer, Upstream

END = {"type": "http.response.body", "body": b""}


class OpenAiRelay:
    """A `Relay` that passes answers on byte for byte; `counts_tokens`: read their token usage."""

    def __init__(self, upstream: Upstream, *, counts_tokens: bool) -> None:
        self.upstream = upstream
        self.counts_tokens = counts_tokens

    async def __call__(self, exchange: Exchange, endpoint: Endpoint, send: Send) -> None:
        tap = prepare_attempt(exchange, endpoint, count_tokens=self.counts_tokens)
        if exchange.stream:
            await self._stream(exchange, endpoint, send, tap)
            return
        async with self.upstream.call(exchange, endpoint) as answer:
            body = await answer.read()
            headers = answer.relayed_headers()
        if self.counts_tokens:
            exchange.prompt_tokens, exchange.completion_tokens = usage_of(body)
        await send_bytes(send, answer.status, body, headers)

    async def _stream(self, exchange: Exchange, endpoint: Endpoint, send: Send, tap: StreamTap | None) -> None:
        started = False
        try:
            async with self.upstream.call(exchange, endpoint) as answer:
                chunk = await answer.next_chunk()
                if not chunk:  # llama-cpp-python does this when its generator fails on the request
                    raise UpstreamError(f"the engine for {endpoint.service!r} ended its stream without an answer")
                headers = answer.relayed_headers()
                await send({"type": "http.response.start", "status": answer.status, "headers": headers})
                started = True
                await _relay_body(exchange, answer, send, tap, chunk)
                if tap is not None and (rest := tap.close()):
                    await send({"type": "http.response.body", "body": rest, "more_body": True})
        except asyncio.CancelledError:
            if exchange.done_sent and tap is not None:  # the client closed at `[DONE]`: it has the whole answer
                count_stream_usage(exchange, tap)
            raise
        except GatewayError as failure:
            if not started:
                raise
            # The head is gone: the error can only travel as the stream's last event.
            exchange.error = UpstreamError(f"{failure.message} (mid-stream)")
            await send({"type": "http.response.body", "body": sse_error_event(exchange.error), "more_body": True})
        if tap is not None:
            count_stream_usage(exchange, tap)
        await send(END)


async def _relay_body(exchange: Exchange, answer: Answer, send: Send, tap: StreamTap | None, chunk: bytes) -> None:
    """The stream's body from `chunk` on: the first part through `send`, the rest straight to the connection
    as each arrives when the server offers a writer (asgi.ChunkWriter), else through `send` too."""
    passed = _passed(exchange, tap)
    if chunk := passed(chunk):
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    writer = exchange.writer
    if writer is not None and writer.usable():
        write = writer.write

        def relay(part: bytes) -> bool:  # in the engine connection's callback
            part = passed(part)
            return write(part) if part else True

        await answer.forward(relay, writer.drain)
        return
    while chunk := await answer.next_chunk():
        if chunk := passed(chunk):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})


def _passed(exchange: Exchange, tap: StreamTap | None) -> Callable[[bytes], bytes]:
    """What of each part of the stream goes to the client (whole events, when tapped), told to the exchange."""

    def passed(chunk: bytes) -> bytes:
        if tap is not None:
            chunk = tap.feed(chunk)
        exchange.relayed(chunk)
        return chunk

    return passed


def count_stream_usage(exchange: Exchange, tap: StreamTap) -> None:
    """The stream's token counts: the engine's usage chunk, or estimates (flagged) when it sent none."""
    prompt, completion = tap.usage()
    if prompt is None and completion is None:
        prompt = estimate_prompt_tokens(exchange.payload)
        completion = estimate_completion_tokens(tap.events, exchange.path)
        exchange.usage_estimated = True
    exchange.prompt_tokens, exchange.completion_tokens = prompt, completion
