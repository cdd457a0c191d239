"""/metrics: counters and histogram counts match a known set of requests; the engines' own
metrics (vLLM, SGLang, llama.cpp names) appear under servestack names, each replica's labelled with its
cluster node ("" on this machine)."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.gateway.prod_engine import (
    COMPLETION_TOKENS,
    LLAMACPP_METRICS,
    PROMPT_TOKENS,
    SGLANG_METRICS,
    ProdEngine,
    start_engine,
)
from tests.gateway.prod_harness import engine_endpoint, production_gateway

pytestmark = pytest.mark.anyio

CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float:
    return found[(name, tuple(sorted(labels.items())))]


async def test_request_counters_and_histograms_match(tmp_path: Path) -> None:
    async with production_gateway(tmp_path / "home") as gw, gw.client() as client:
        for _ in range(5):
            assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200
        for _ in range(3):
            assert (await client.post("/v1/chat/completions", json={**CHAT, "stream": True})).status_code == 200
        for _ in range(2):
            assert (await client.post("/v1/chat/completions", json={**CHAT, "model": "gpt-9"})).status_code == 404
        found = samples((await client.get("/metrics")).text)
    assert value(found, "servestack_requests_total", model="tiny", status="200") == 8
    assert value(found, "servestack_requests_total", model="unknown", status="404") == 2
    for histogram in ("servestack_time_to_first_token_seconds", "servestack_request_duration_seconds"):
        assert value(found, f"{histogram}_count", model="tiny") == 8
        assert value(found, f"{histogram}_bucket", model="tiny", le="+Inf") == 8
    assert value(found, "servestack_inter_token_latency_seconds_count", model="tiny") == 3  # streams only
    assert value(found, "servestack_tokens_total", model="tiny", kind="prompt") == 8 * PROMPT_TOKENS
    assert value(found, "servestack_tokens_total", model="tiny", kind="completion") == 8 * COMPLETION_TOKENS
    assert value(found, "servestack_requests_in_flight", model="tiny") == 0
    assert value(found, "servestack_replica_ready", service="tiny", replica="tiny.0", engine="vllm", node="") == 1


async def test_engine_metrics_are_reexported_under_servestack_names(tmp_path: Path) -> None:
    sglang, llamacpp = ProdEngine(metrics_text=SGLANG_METRICS), ProdEngine(metrics_text=LLAMACPP_METRICS)
    runners = []
    async with production_gateway(tmp_path / "home") as gw:
        for name, engine_name, engine in (("sg", "sglang", sglang), ("lc", "llama-server", llamacpp)):
            runner, url = await start_engine(engine)
            runners.append(runner)
            endpoint = engine_endpoint(name, url, engine_name)
            endpoint.node = "w1" if name == "sg" else ""  # a replica on a cluster node
            gw.table.upsert(endpoint)
        gw.table.upsert(engine_endpoint("down", "http://127.0.0.1:1", "vllm"))
        await gw.gateway.monitor.scrape_all()
        async with gw.client() as client:
            text = (await client.get("/metrics")).text
        for runner in runners:
            await runner.cleanup()
    found = samples(text)
    vllm = {"service": "tiny", "replica": "tiny.0", "engine": "vllm", "node": ""}
    sg = {"service": "sg", "replica": "sg.0", "engine": "sglang", "node": "w1"}
    lc = {"service": "lc", "replica": "lc.0", "engine": "llama-server", "node": ""}
    assert value(found, "servestack_engine_requests_waiting", **vllm) == 3
    assert value(found, "servestack_engine_requests_waiting", **sg) == 1
    assert value(found, "servestack_engine_requests_waiting", **lc) == 4
    assert value(found, "servestack_engine_requests_running", **sg) == 5
    assert value(found, "servestack_engine_kv_cache_usage_ratio", **vllm) == 0.25
    assert value(found, "servestack_engine_kv_cache_usage_ratio", **lc) == 0.125
    assert value(found, "servestack_engine_prefix_cache_hit_ratio", **sg) == 0.75
    assert value(found, "servestack_engine_prompt_tokens_total", **vllm) == 1200
    assert value(found, "servestack_engine_generation_tokens_total", **lc) == 20
    assert value(found, "servestack_engine_time_to_first_token_seconds_count", **vllm) == 10
    assert value(found, "servestack_engine_time_to_first_token_seconds_bucket", **vllm, le="0.1") == 4
    assert value(found, "servestack_engine_time_to_first_token_seconds_sum", **vllm) == 3.5
    assert value(found, "servestack_engine_metrics_up", **vllm) == 1
    assert value(found, "servestack_engine_metrics_up", service="down", replica="down.0", engine="vllm", node="") == 0
    assert value(found, "servestack_replica_ready", **sg) == 1
    assert not any(name.startswith(("vllm:", "sglang:", "llamacpp:")) for name, _ in found)
