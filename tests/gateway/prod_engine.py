"""A fake engine for the production-gateway tests: usage on answers and streams, embeddings,
SGLang's /generate, and a /metrics page in vLLM's, SGLang's or llama.cpp's names."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

from aiohttp import web

PROMPT_TOKENS = 7
COMPLETION_TOKENS = 3
PIECES = ["Hel", "lo", " there"]
USAGE = {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": COMPLETION_TOKENS, "total_tokens": 10}

VLLM_METRICS = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 2.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="m"} 3.0
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.25
# HELP vllm:prompt_tokens_total Number of prefill tokens processed.
# TYPE vllm:prompt_tokens_total counter
vllm:prompt_tokens_total{engine="0",model_name="m"} 1200.0
# HELP vllm:generation_tokens_total Number of generation tokens processed.
# TYPE vllm:generation_tokens_total counter
vllm:generation_tokens_total{engine="0",model_name="m"} 340.0
# HELP vllm:prefix_cache_queries_total Prefix cache queries, in terms of number of queried tokens.
# TYPE vllm:prefix_cache_queries_total counter
vllm:prefix_cache_queries_total{engine="0",model_name="m"} 1000.0
# HELP vllm:prefix_cache_hits_total Prefix cache hits, in terms of number of cached tokens.
# TYPE vllm:prefix_cache_hits_total counter
vllm:prefix_cache_hits_total{engine="0",model_name="m"} 600.0
# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{engine="0",le="0.1",model_name="m"} 4.0
vllm:time_to_first_token_seconds_bucket{engine="0",le="1.0",model_name="m"} 9.0
vllm:time_to_first_token_seconds_bucket{engine="0",le="+Inf",model_name="m"} 10.0
vllm:time_to_first_token_seconds_count{engine="0",model_name="m"} 10.0
vllm:time_to_first_token_seconds_sum{engine="0",model_name="m"} 3.5
"""
SGLANG_METRICS = """\
# HELP sglang:num_running_reqs The number of running requests.
# TYPE sglang:num_running_reqs gauge
sglang:num_running_reqs{model_name="s"} 5.0
# HELP sglang:num_queue_reqs The number of requests in the waiting queue.
# TYPE sglang:num_queue_reqs gauge
sglang:num_queue_reqs{model_name="s"} 1.0
# HELP sglang:token_usage The token usage.
# TYPE sglang:token_usage gauge
sglang:token_usage{model_name="s"} 0.5
# HELP sglang:cache_hit_rate The prefix cache hit rate.
# TYPE sglang:cache_hit_rate gauge
sglang:cache_hit_rate{model_name="s"} 0.75
# HELP sglang:generation_tokens_total Number of generation tokens processed.
# TYPE sglang:generation_tokens_total counter
sglang:generation_tokens_total{model_name="s"} 77.0
"""
LLAMACPP_METRICS = """\
# HELP llamacpp:prompt_tokens_total Number of prompt tokens processed.
# TYPE llamacpp:prompt_tokens_total counter
llamacpp:prompt_tokens_total 50
# HELP llamacpp:tokens_predicted_total Number of generation tokens processed.
# TYPE llamacpp:tokens_predicted_total counter
llamacpp:tokens_predicted_total 20
# HELP llamacpp:kv_cache_usage_ratio KV-cache usage. 1 means 100 percent usage.
# TYPE llamacpp:kv_cache_usage_ratio gauge
llamacpp:kv_cache_usage_ratio 0.125
# HELP llamacpp:requests_processing Number of requests processing.
# TYPE llamacpp:requests_processing gauge
llamacpp:requests_processing 1
# HELP llamacpp:requests_deferred Number of requests deferred.
# TYPE llamacpp:requests_deferred gauge
llamacpp:requests_deferred 4
"""
# The common keys each engine's adapter maps to its own names (reference/engines.md).
ENGINE_METRIC_NAMES = {
    "vllm": {
        "running": "vllm:num_requests_running",
        "waiting": "vllm:num_requests_waiting",
        "kv_usage": "vllm:kv_cache_usage_perc",
        "prompt_tokens": "vllm:prompt_tokens_total",
        "generation_tokens": "vllm:generation_tokens_total",
        "ttft": "vllm:time_to_first_token_seconds",
        "prefix_cache_queries": "vllm:prefix_cache_queries_total",
        "prefix_cache_hits": "vllm:prefix_cache_hits_total",
    },
    "sglang": {
        "running": "sglang:num_running_reqs",
        "waiting": "sglang:num_queue_reqs",
        "kv_usage": "sglang:token_usage",
        "cache_hit_rate": "sglang:cache_hit_rate",
        "generation_tokens": "sglang:generation_tokens_total",
    },
    "llama-server": {
        "running": "llamacpp:requests_processing",
        "waiting": "llamacpp:requests_deferred",
        "kv_usage": "llamacpp:kv_cache_usage_ratio",
        "prompt_tokens": "llamacpp:prompt_tokens_total",
        "generation_tokens": "llamacpp:tokens_predicted_total",
    },
}


def sse(payload: object) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


def chat_stream(model: str, with_usage: bool) -> list[bytes]:
    chunks = [sse({"id": "s1", "model": model, "choices": [{"index": 0, "delta": {"role": "assistant"}}]})]
    chunks += [sse({"id": "s1", "choices": [{"index": 0, "delta": {"content": p}}]}) for p in PIECES]
    chunks.append(sse({"id": "s1", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
    if with_usage:
        chunks.append(sse({"id": "s1", "choices": [], "usage": USAGE}))
    return [*chunks, b"data: [DONE]\n\n"]


@dataclass
class ProdEngine:
    metrics_text: str = VLLM_METRICS
    delay: float = 0.0  # seconds before answering (holds requests in flight)
    stall: float = 0.0  # seconds of silence before answering (upstream idle timeout)
    end_late: float = 0.0  # seconds between a stream's last event (`[DONE]`) and the end of the stream
    split_done: bool = False  # write a stream's `data: [DONE]` in two halves, 50 ms apart
    received: list[dict[str, object]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    streams: list[bytes] = field(default_factory=list)  # what each stream sent, byte for byte

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_post("/v1/embeddings", self.embeddings)
        app.router.add_post("/generate", self.generate)
        app.router.add_get("/metrics", self.metrics)
        return app

    async def _take(self, request: web.Request) -> dict[str, object]:
        body = await request.json()
        self.received.append(body)
        self.headers.append({k.lower(): v for k, v in request.headers.items()})
        if self.stall:
            await asyncio.sleep(self.stall)
        if self.delay or (isinstance(body, dict) and "slow" in json.dumps(body)):
            await asyncio.sleep(self.delay or 30)
        return body

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = await self._take(request)
        model = str(body.get("model"))
        if not body.get("stream"):
            answer = {
                "id": "c1",
                "object": "chat.completion",
                "model": model,
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": "".join(PIECES)}, "finish_reason": "stop"}
                ],
                "usage": USAGE,
            }
            return web.json_response(answer)
        options = body.get("stream_options")
        with_usage = isinstance(options, dict) and options.get("include_usage") is True
        return await self._stream(request, chat_stream(model, with_usage))

    async def completions(self, request: web.Request) -> web.StreamResponse:
        body = await self._take(request)
        if not body.get("stream"):
            choice = {"index": 0, "text": "".join(PIECES), "finish_reason": "length"}
            return web.json_response({"id": "t1", "object": "text_completion", "choices": [choice], "usage": USAGE})
        chunks = [sse({"id": "t1", "choices": [{"index": 0, "text": p}]}) for p in PIECES]
        options = body.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage"):
            chunks.append(sse({"id": "t1", "choices": [], "usage": USAGE}))
        return await self._stream(request, [*chunks, b"data: [DONE]\n\n"])

    async def embeddings(self, request: web.Request) -> web.StreamResponse:
        await self._take(request)
        data = [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2, 0.3]}]
        return web.json_response({"object": "list", "data": data, "usage": {"prompt_tokens": 4, "total_tokens": 4}})

    async def generate(self, request: web.Request) -> web.StreamResponse:
        body = await self._take(request)
        if not body.get("stream"):
            meta = {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": COMPLETION_TOKENS}
            return web.json_response({"text": "".join(PIECES), "meta_info": meta})
        chunks = [
            sse(
                {
                    "text": "".join(PIECES[: i + 1]),
                    "meta_info": {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": i + 1},
                }
            )
            for i in range(len(PIECES))
        ]
        return await self._stream(request, [*chunks, b"data: [DONE]\n\n"])

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(text=self.metrics_text, content_type="text/plain")

    async def _stream(self, request: web.Request, chunks: list[bytes]) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for chunk in chunks:
            if self.split_done and chunk.startswith(b"data: [DONE]"):
                await response.write(chunk[:9])
                await asyncio.sleep(0.05)  # the halves reach the gateway in two reads
                chunk = chunk[9:]
            await response.write(chunk)
        self.streams.append(b"".join(chunks))
        if self.end_late:
            await asyncio.sleep(self.end_late)
        await response.write_eof()
        return response


async def start_engine(engine: ProdEngine) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(engine.app(), handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"
