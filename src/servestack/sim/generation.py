"""Serving one generation request: through the latency model, or at once in instant mode.

Simulated path: tokenize, check the length limits, queue in the scheduler, wait out the prefill,
then release tokens on the decode timeline — streamed as SSE chunks as they come due, or as one
answer at the end. Instant path: no tokenizer, no scheduler, no sleeps — a canned answer of
`max_tokens` words, with prompt tokens estimated as characters / 4 — so that a gateway benchmark
measures the gateway, not the simulator.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from servestack.asgi import Headers, Send, send_bytes
from servestack.errors import BadRequest
from servestack.sim.clock import Clock
from servestack.sim.metrics import SimMetrics
from servestack.sim.protocol import DONE, AnswerWriter, GenerationRequest, Route, usage
from servestack.sim.scheduler import Scheduler, Sequence
from servestack.sim.tokenizer import WORDS, Tokenizer, generated_pieces

SSE_HEADERS: Headers = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")]
JSON_HEADERS: Headers = [(b"content-type", b"application/json")]
CANNED_LIMIT = 4096  # canned answers kept per length, up to this many tokens


@dataclass(frozen=True)
class Limits:
    max_model_len: int
    default_max_tokens: int


class Generator:
    def __init__(
        self,
        limits: Limits,
        scheduler: Scheduler,
        tokenizer: Tokenizer,
        metrics: SimMetrics,
        clock: Clock,
        rng: random.Random,
    ) -> None:
        self.limits = limits
        self.scheduler = scheduler
        self.tokenizer = tokenizer
        self.metrics = metrics
        self.clock = clock
        self.rng = rng
        self._canned: dict[tuple[int, bool], list[str]] = {}

    async def instant(self, request: GenerationRequest, writer: AnswerWriter, send: Send, headers: Headers) -> None:
        max_tokens = request.max_tokens or self.limits.default_max_tokens
        prompt = request.prompt
        prompt_tokens = len(prompt) if isinstance(prompt, list) else sum(map(len, prompt)) // 4 + 1
        self._check_length(prompt_tokens, max_tokens)
        pieces = self._canned_pieces(max_tokens, request.route is Route.COMPLETION)
        reason = request.finish_reason
        counts = usage(prompt_tokens, max_tokens, 0)
        self.metrics.prompt_seen(prompt_tokens, 0, cache_queried=False)
        self.metrics.finished(max_tokens, reason)
        if not request.stream:
            await send_bytes(send, 200, writer.whole("".join(pieces), reason, counts), [*JSON_HEADERS, *headers])
            return
        await _start_stream(send, headers)
        if writer.chat:
            await _send_chunk(send, writer.chunk("", role=True, usage_null=request.include_usage))
        last = len(pieces) - 1
        for i, piece in enumerate(pieces):
            chunk = writer.chunk(piece, reason if i == last else None, usage_null=request.include_usage)
            await _send_chunk(send, chunk)
        await _end_stream(send, writer.usage_chunk(counts) if request.include_usage else b"")

    async def simulate(self, request: GenerationRequest, writer: AnswerWriter, send: Send, headers: Headers) -> None:
        prompt = request.prompt
        prompt_ids = prompt if isinstance(prompt, list) else self.tokenizer.encode_segments(prompt)
        max_tokens = request.max_tokens or self.limits.default_max_tokens
        self._check_length(len(prompt_ids), max_tokens)
        seq = Sequence(prompt_ids, max_tokens)
        if not self.scheduler.fits(seq):
            raise BadRequest(
                f"this request needs {seq.kv_tokens} KV tokens (prompt + max_tokens) but the simulated "
                f"KV cache holds {self.scheduler.model.kv_capacity}"
            )
        pieces = generated_pieces(self.rng.randrange(len(WORDS)), max_tokens, leading_space=not writer.chat)
        await self.scheduler.admit(seq)
        conversation = None
        try:
            self.metrics.prompt_seen(seq.prompt_tokens, seq.cached_tokens)
            if request.stream:
                await self._stream(seq, request, writer, pieces, send, headers)
            else:
                await self._whole(seq, request, writer, pieces, send, headers)
            conversation = self._conversation(request, prompt_ids, pieces)
        finally:
            self.scheduler.finish(seq, conversation)

    async def _whole(
        self, seq: Sequence, request: GenerationRequest, writer: AnswerWriter, pieces: list[str], send: Send,
        headers: Headers,
    ) -> None:  # fmt: skip
        await self._first_token(seq)
        await self.clock.sleep_until(seq.finish_at)
        body = writer.whole("".join(pieces), request.finish_reason, self._usage(seq))
        await send_bytes(send, 200, body, [*JSON_HEADERS, *headers])
        self.metrics.finished(seq.max_tokens, request.finish_reason, self.clock.now() - seq.arrived_at)

    async def _stream(
        self, seq: Sequence, request: GenerationRequest, writer: AnswerWriter, pieces: list[str], send: Send,
        headers: Headers,
    ) -> None:  # fmt: skip
        await _start_stream(send, headers)
        await self._first_token(seq)
        usage_null = request.include_usage
        if writer.chat:
            await _send_chunk(send, writer.chunk("", role=True, usage_null=usage_null))
        sent, last = 0, seq.max_tokens - 1
        while sent < seq.max_tokens:
            due = seq.tokens_due(self.clock.now())
            if due > sent:
                chunks = [
                    writer.chunk(pieces[i], request.finish_reason if i == last else None, usage_null=usage_null)
                    for i in range(sent, due)
                ]
                await _send_chunk(send, b"".join(chunks))
                sent = due
            if sent < seq.max_tokens:
                await self.clock.sleep_until(seq.token_time(sent))
        await _end_stream(send, writer.usage_chunk(self._usage(seq)) if request.include_usage else b"")
        self.metrics.finished(seq.max_tokens, request.finish_reason, self.clock.now() - seq.arrived_at)

    async def _first_token(self, seq: Sequence) -> None:
        await self.scheduler.prefill(seq)
        self.metrics.first_token(self.clock.now() - seq.arrived_at)

    def _usage(self, seq: Sequence) -> dict[str, object]:
        return usage(seq.prompt_tokens, seq.max_tokens, seq.cached_tokens)

    def _conversation(self, request: GenerationRequest, prompt_ids: list[int], pieces: list[str]) -> list[int]:
        """Prompt and answer as the next turn will tokenize them, for the prefix cache."""
        answer = "".join(pieces)
        if request.route is Route.CHAT and isinstance(request.prompt, tuple):
            *messages, header = request.prompt  # the next turn renders the header and answer as one message
            return self.tokenizer.encode_segments(messages) + self.tokenizer.encode(header + answer)
        return prompt_ids + self.tokenizer.encode(answer)  # a completion's answer starts a new piece

    def _check_length(self, prompt_tokens: int, max_tokens: int) -> None:
        limit = self.limits.max_model_len
        if prompt_tokens + max_tokens > limit:
            raise BadRequest(
                f"This model's maximum context length is {limit} tokens. However, you requested "
                f"{prompt_tokens + max_tokens} tokens ({prompt_tokens} in the messages, {max_tokens} in the "
                "completion). Please reduce the length of the messages or completion.",
                param="max_tokens",
            )

    def _canned_pieces(self, count: int, leading_space: bool) -> list[str]:
        key = (count, leading_space)
        pieces = self._canned.get(key)
        if pieces is None:
            pieces = generated_pieces(0, count, leading_space=leading_space)
            if count <= CANNED_LIMIT:
                self._canned[key] = pieces
        return pieces


async def _start_stream(send: Send, headers: Headers) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [*SSE_HEADERS, *headers]})


async def _send_chunk(send: Send, data: bytes) -> None:
    await send({"type": "http.response.body", "body": data, "more_body": True})


async def _end_stream(send: Send, last_events: bytes) -> None:
    await send({"type": "http.response.body", "body": last_events + DONE, "more_body": False})
