"""The latency model over real sockets: cached prefixes answer sooner, full batches queue, metrics show it.

Timings are wall-clock and the machine is shared, so every bound leaves a wide margin: the model's
figures are asserted exactly on the fake clock in test_scheduler.py; here only their effect is.
"""

from __future__ import annotations

import contextlib
import threading
import time

import httpx
import openai
import pytest
from simtools import ThreadedSim, scrape, timer

SYSTEM = "You are a helpful assistant who answers briefly and precisely. " * 120  # ~1,500 tokens


def ask(sim: ThreadedSim, question: str, max_tokens: int = 2, client: openai.OpenAI | None = None) -> tuple[float, int]:
    """Stream one chat request; return (wall seconds to the first token, cached tokens)."""
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]
    client = client or sim.client()
    ttft = None
    cached = -1
    started = time.monotonic()
    stream = client.chat.completions.create(
        model="sim", messages=messages, max_tokens=max_tokens, stream=True, stream_options={"include_usage": True}
    )
    for chunk in stream:
        if ttft is None and chunk.choices and chunk.choices[0].delta.content:
            ttft = time.monotonic() - started
        if chunk.usage and chunk.usage.prompt_tokens_details:
            cached = chunk.usage.prompt_tokens_details.cached_tokens or 0
    assert ttft is not None
    return ttft, cached


def wait_for(sim: ThreadedSim, metric: str, value: float, timeout: float = 10) -> dict[str, float]:
    """Scrape until `metric` equals `value`; return that scrape."""
    deadline = time.monotonic() + timeout
    while (metrics := scrape(sim.url))[metric] != value:
        assert time.monotonic() < deadline, f"{metric} stayed {metrics[metric]}, expected {value}"
        time.sleep(0.01)
    return metrics


def post_quietly(url: str, body: dict[str, object]) -> None:
    """POST from a helper thread; the server may cut it off when the test ends."""
    with contextlib.suppress(httpx.HTTPError):
        httpx.post(url, json=body, timeout=20)


def test_a_cached_prefix_gives_a_lower_ttft(start_sim) -> None:  # type: ignore[no-untyped-def]
    # ~1,500 prompt tokens at 400 tokens/s: ~3.7 s of prefill, ~0.37 s of wall time at scale 0.1.
    sim = start_sim(prefill_rate=400, decode_rate=1000, time_scale=0.1)
    cold_ttft, cold_cached = ask(sim, "What is a radix tree?")
    warm_ttft, warm_cached = ask(sim, "And an LRU cache?")
    assert cold_cached == 0 and warm_cached > 1400
    assert cold_ttft > 0.3
    assert warm_ttft < cold_ttft / 2
    metrics = sim.metrics()
    assert metrics["vllm:prefix_cache_hits_total"] == warm_cached
    assert metrics["vllm:prefix_cache_queries_total"] == metrics["vllm:prompt_tokens_total"]


def test_a_full_batch_queues_and_the_metrics_show_the_queue(start_sim) -> None:  # type: ignore[no-untyped-def]
    # One sequence at a time; each takes 20 tokens / 40 per s = 0.5 s.
    sim = start_sim(max_running=1, prefill_rate=1e6, decode_rate=40, time_scale=1.0)
    clients = [sim.client() for _ in range(3)]
    ttfts: list[float] = []

    def one(client: openai.OpenAI) -> None:
        ttfts.append(ask(sim, "queue me", max_tokens=20, client=client)[0])

    threads = [threading.Thread(target=one, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    metrics = wait_for(sim, "vllm:num_requests_waiting", 2)
    assert metrics["vllm:num_requests_running"] == 1
    assert metrics["vllm:kv_cache_usage_perc"] > 0
    for thread in threads:
        thread.join(10)
    ttfts.sort()
    assert ttfts[1] > 0.4 and ttfts[2] > 0.85  # each waited for the ones before it to finish
    after = scrape(sim.url)
    assert (after["vllm:num_requests_waiting"], after["vllm:num_requests_running"]) == (0, 0)
    assert after["vllm:kv_cache_usage_perc"] == 0
    assert after["vllm:request_success_total"] == 3
    assert after["vllm:generation_tokens_total"] == 60
    assert after["vllm:time_to_first_token_seconds_count"] == 3
    assert after["vllm:time_to_first_token_seconds_bucket{le=0.25}"] < 3  # the queued ones waited 0.5 s and 1 s


def test_kv_capacity_holds_back_admission(start_sim) -> None:  # type: ignore[no-untyped-def]
    sim = start_sim(kv_capacity=1200, prefill_rate=1e6, decode_rate=1, time_scale=1.0)  # 10 tokens: 10 s
    body = {"model": "sim", "prompt": list(range(500)), "max_tokens": 10, "stream": True}  # 510 KV tokens
    with httpx.Client(timeout=10) as http, contextlib.ExitStack() as streams:
        running = [streams.enter_context(http.stream("POST", sim.url + "/v1/completions", json=body)) for _ in "ab"]
        chunks = [resp.iter_raw() for resp in running]
        for chunk in chunks:
            next(chunk)
        third = threading.Thread(target=post_quietly, args=(sim.url + "/v1/completions", body))
        third.start()
        metrics = wait_for(sim, "vllm:num_requests_waiting", 1)
        assert metrics["vllm:num_requests_running"] == 2  # a third would need 1,530 of 1,200 KV tokens
        assert metrics["vllm:kv_cache_usage_perc"] == pytest.approx(1020 / 1200)
        running[0].close()
        wait_for(sim, "vllm:num_requests_waiting", 0)
        assert scrape(sim.url)["vllm:num_requests_running"] == 2
    sim.stop()  # cuts the third request off
    third.join(5)
    assert not third.is_alive()
    sim = start_sim(kv_capacity=1200)
    too_big = httpx.post(sim.url + "/v1/completions", json={**body, "max_tokens": 800, "stream": False}, timeout=5)
    assert too_big.status_code == 400 and "KV cache" in too_big.json()["error"]["message"]


def test_time_scale_speeds_up_wall_time_but_not_simulated_time(start_sim) -> None:  # type: ignore[no-untyped-def]
    # 500 prompt tokens at 1,000/s + 50 tokens at 100/s: 0.5 + 0.49 = 0.99 simulated seconds.
    body = {"model": "sim", "prompt": list(range(500)), "max_tokens": 50}
    walls = {}
    for scale in (0.5, 0.01):
        sim = start_sim(prefill_rate=1000, decode_rate=100, time_scale=scale)
        with httpx.Client(timeout=10) as http, timer() as took:
            assert http.post(sim.url + "/v1/completions", json=body).status_code == 200
        walls[scale] = took[0]
        assert scrape(sim.url)["vllm:e2e_request_latency_seconds_sum"] >= 0.98  # in simulated seconds
    assert walls[0.5] > 0.49
    assert walls[0.01] < 0.25


def test_a_client_that_goes_away_frees_its_slot(start_sim) -> None:  # type: ignore[no-untyped-def]
    sim = start_sim(max_running=1, prefill_rate=1e6, decode_rate=10, time_scale=1.0)  # 100 tokens: 10 s
    body = {"model": "sim", "prompt": "a long story", "max_tokens": 100, "stream": True}
    with httpx.stream("POST", sim.url + "/v1/completions", json=body, timeout=5) as resp:
        chunks = resp.iter_raw()  # (kept: a dropped iterator would close the response at once)
        next(chunks)  # the first token is out: the sequence runs
        assert scrape(sim.url)["vllm:num_requests_running"] == 1
    deadline = time.monotonic() + 3
    while scrape(sim.url)["vllm:num_requests_running"] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert scrape(sim.url)["vllm:num_requests_running"] == 0
    assert sim.call(lambda: sim.server.app.scheduler.kv_used) == 0
