"""On-demand services on simulators with a load time of a second: real processes, the official `openai` client.

The box: one 80 GB GPU (`up --gpus 1xH100`) and three on-demand services claiming 0.6, 0.5 and 0.3 of it, so
a and b exclude each other and the three never fit at once. While traffic runs, a watcher reads
`status --json` over and over and checks that what is loaded (loading, loaded or draining) never
over-commits the GPU, by the plan's own residency.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from servestack.gpus import parse_inventory
from servestack.plan import make_plan
from servestack.plan.residency import Residency
from servestack.stack import load_stack
from servestack.supervisor import pid_alive
from tests.conftest import run_cli

pytestmark = pytest.mark.e2e

LOAD_SECONDS = 1.0
STACK = """
version: 1
gateway:
  port: {port}
  swap_hold: 2s
  load_keepalive: 0.3s
  load_max_waiting: 4
services:
  a:
    engine: sim
    model: a
    gpus: [0]
    memory_fraction: 0.6
    load: on-demand
    keep_alive: 60s
    args: ["--slow-start", "{load}", "--decode-rate", "50"]
  b:
    engine: sim
    model: b
    gpus: [0]
    memory_fraction: 0.5
    load: on-demand
    keep_alive: 60s
    args: ["--slow-start", "{load}", "--decode-rate", "50"]
  c:
    engine: sim
    model: c
    gpus: [0]
    memory_fraction: 0.3
    load: on-demand
    keep_alive: 2s
    unload: sleep
    args: ["--slow-start", "{load}", "--wake-time", "0.1", "--decode-rate", "50"]
  broken:
    engine: sim
    model: broken
    load: on-demand
    args: ["--slow-start", "30", "--crash-after-seconds", "0.5"]
  slow:
    engine: sim
    model: slow
    load: on-demand
    args: ["--slow-start", "30"]
"""
HI = [{"role": "user", "content": "hi"}]


class Box:
    def __init__(self, url: str, stack: Path) -> None:
        self.url = url
        plan = make_plan(load_stack(stack), parse_inventory("1xH100"))
        assert plan.residency is not None
        self.residency: Residency = plan.residency
        self.client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=60)

    def ask(self, model: str, *, stream: bool = False, max_tokens: int = 4) -> str:
        """One chat request; the answer's text (a stream must end with a finish reason)."""
        if not stream:
            reply = self.client.chat.completions.create(model=model, messages=HI, max_tokens=max_tokens)  # type: ignore[arg-type]
            return reply.choices[0].message.content or ""
        chunks = list(
            self.client.chat.completions.create(model=model, messages=HI, max_tokens=max_tokens, stream=True)  # type: ignore[arg-type]
        )
        assert chunks and chunks[-1].choices[0].finish_reason is not None
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

    def metric(self, name: str, **labels: str) -> float:
        wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in httpx.get(self.url + "/metrics", timeout=5).text.splitlines():
            if line.startswith(f"{name}{{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
        assert wanted is not None
        return 0.0


def status() -> dict[str, Any]:
    return json.loads(run_cli("status", "--json").stdout)


def loads(current: dict[str, Any]) -> dict[str, str]:
    return {r["service"]: (r["load"] or r["status"]) for r in current["services"]}


def wait_for(predicate: Callable[[dict[str, Any]], bool], timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = status()
        if predicate(current):
            return current
        time.sleep(0.1)
    pytest.fail(f"condition not met; last status: {loads(current)}")


class Watcher:
    """Reads `status --json` until stopped; records every loaded set that over-commits the GPU."""

    def __init__(self, residency: Residency) -> None:
        self.residency = residency
        self.seen: list[dict[str, str]] = []
        self.over: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            replicas = status()["services"]
            holding = [r["service"] for r in replicas if r["load"] in ("loading", "loaded", "draining")]
            asleep = [r["service"] for r in replicas if r["status"] == "sleeping"]
            self.seen.append(loads({"services": replicas}))
            for conflict in self.residency.conflicts(holding, asleep):
                self.over.append(conflict.describe())


@pytest.fixture
def box(home: Path, tmp_path: Path, port: int) -> Iterator[Box]:
    stack = tmp_path / "stack.yaml"
    stack.write_text(STACK.format(port=port, load=LOAD_SECONDS))
    result = run_cli("up", "-d", "-f", str(stack), "--gpus", "1xH100", timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    try:
        yield Box(f"http://127.0.0.1:{port}", stack)
    finally:
        run_cli("down")


def test_on_demand_services_start_unloaded_and_the_first_request_loads_one(box: Box) -> None:
    assert set(loads(status()).values()) == {"unloaded"}
    started = time.monotonic()
    assert box.ask("a")
    assert time.monotonic() - started >= LOAD_SECONDS * 0.9  # it waited for the load
    assert loads(status())["a"] == "loaded"
    started = time.monotonic()
    assert box.ask("a")
    assert time.monotonic() - started < LOAD_SECONDS  # loaded: no wait
    assert box.metric("servestack_model_loads_total", service="a", how="cold") == 1


def test_alternating_and_concurrent_traffic_fails_nothing_and_never_over_commits_the_gpu(box: Box) -> None:
    with Watcher(box.residency) as watcher:
        for model in ["a", "b", "c", "a", "b", "c"]:  # alternating: every switch between a and b is a swap
            assert box.ask(model, stream=model == "b")
        work = [(m, i % 2 == 0) for i, m in enumerate(["a", "b", "c"] * 6)]
        with ThreadPoolExecutor(3) as pool:
            answers = list(pool.map(lambda item: box.ask(item[0], stream=item[1]), work))
    assert all(answers) and len(answers) == 18  # zero failed requests
    assert watcher.over == []
    assert len(watcher.seen) > 5
    assert {s["a"] for s in watcher.seen} > {"unloaded"} and {s["b"] for s in watcher.seen} > {"unloaded"}
    assert box.metric("servestack_model_unloads_total", service="a", reason="evicted") >= 1


def test_an_eviction_drains_the_loaded_service_first_and_cuts_nothing(box: Box) -> None:
    box.ask("a")
    with ThreadPoolExecutor(2) as pool:
        long_stream = pool.submit(box.ask, "a", stream=True, max_tokens=100)  # about 2 s at 50 tokens/s
        time.sleep(0.5)
        started = time.monotonic()
        other = pool.submit(box.ask, "b")
        text = long_stream.result(timeout=30)
        assert other.result(timeout=30)
    assert len(text.split()) >= 90  # every token arrived: the stream was not cut
    assert time.monotonic() - started >= 1.5 + LOAD_SECONDS * 0.9  # b waited for a's stream, then for its load
    events = [e["message"] for r in status()["services"] if r["service"] == "a" for e in r["events"]]
    assert any(m.startswith(("unloaded (evicted for b", "unloaded (swapped out for b")) for m in events)


def test_keep_alive_unloads_on_time_and_a_sleeping_engine_wakes_faster_than_a_load(box: Box) -> None:
    started = time.monotonic()
    box.ask("c")
    cold = time.monotonic() - started
    done = time.monotonic()
    wait_for(lambda s: loads(s)["c"] == "unloaded", timeout=10)
    assert 1.8 <= time.monotonic() - done <= 4.0  # keep_alive 2s
    [c] = [r for r in status()["services"] if r["service"] == "c"]
    assert c["status"] == "sleeping" and pid_alive(c["pid"])  # unload: sleep keeps the process
    started = time.monotonic()
    box.ask("c")
    assert time.monotonic() - started < cold / 2
    assert box.metric("servestack_model_loads_total", service="c", how="wake") == 1


def test_a_failed_load_answers_every_waiter_with_a_503_naming_the_service(box: Box) -> None:
    def ask_broken(_: int) -> tuple[int, str, float]:
        started = time.monotonic()
        reply = httpx.post(box.url + "/v1/chat/completions", json={"model": "broken", "messages": HI}, timeout=30)
        return reply.status_code, reply.json()["error"]["message"], time.monotonic() - started

    with ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(ask_broken, range(3)))
    for code, message, seconds in answers:
        assert code == 503 and seconds < 5
        assert "could not be loaded: service 'broken' failed to start" in message
        assert "sim: crashing on purpose" in message  # the engine's last log lines


def test_requests_past_the_waiting_bound_get_503_with_retry_after(box: Box) -> None:
    with ThreadPoolExecutor(8) as pool:
        replies = list(
            pool.map(
                lambda _: httpx.post(box.url + "/v1/chat/completions", json={"model": "a", "messages": HI}, timeout=30),
                range(8),
            )
        )
    refused = [r for r in replies if r.status_code == 503]
    assert len(refused) >= 4 and all(r.headers.get("retry-after") for r in refused)
    assert "already waiting for the model 'a' to load" in refused[0].json()["error"]["message"]
    assert sum(r.status_code == 200 for r in replies) >= 4


def test_a_waiting_stream_is_kept_alive_with_sse_comments(box: Box) -> None:
    body = {"model": "b", "messages": HI, "max_tokens": 2, "stream": True}
    with httpx.stream("POST", box.url + "/v1/chat/completions", json=body, timeout=30) as reply:
        assert reply.status_code == 200
        lines = [line for line in reply.iter_lines() if line]
    assert lines[0] == ": loading model b"  # sent while b loads (every 0.3 s)
    assert lines[-1] == "data: [DONE]"


def test_two_busy_services_take_turns_by_the_fairness_hold(box: Box) -> None:
    deadline = time.monotonic() + 8

    def keep_asking(model: str) -> int:
        answered = 0
        while time.monotonic() < deadline:
            assert box.ask(model, max_tokens=8)
            answered += 1
        return answered

    with Watcher(box.residency) as watcher, ThreadPoolExecutor(4) as pool:
        counts = list(pool.map(keep_asking, ["a", "a", "b", "b"]))
    assert all(counts)  # both were served: neither starved
    assert watcher.over == []
    assert box.metric("servestack_model_unloads_total", reason="swapped") >= 1


def test_kill_9_of_an_engine_while_loading_and_while_serving(box: Box) -> None:
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(
            httpx.post, box.url + "/v1/chat/completions", json={"model": "slow", "messages": HI}, timeout=30
        )
        loading = wait_for(lambda s: any(r["service"] == "slow" and r["pgid"] for r in s["services"]))
        [slow] = [r for r in loading["services"] if r["service"] == "slow"]
        os.killpg(slow["pgid"], signal.SIGKILL)
        reply = waiting.result(timeout=10)
    assert reply.status_code == 503 and "service 'slow' failed to start" in reply.json()["error"]["message"]

    box.ask("a")
    [a] = [r for r in status()["services"] if r["service"] == "a"]
    os.killpg(a["pgid"], signal.SIGKILL)
    wait_for(lambda s: loads(s)["a"] != "loaded")
    assert box.ask("a")  # the next request loads it again
    assert loads(status())["a"] == "loaded"


def test_down_during_a_load_leaves_no_process_behind(box: Box) -> None:
    with ThreadPoolExecutor(1) as pool:
        pool.submit(httpx.post, box.url + "/v1/chat/completions", json={"model": "slow", "messages": HI}, timeout=30)
        loading = wait_for(lambda s: any(r["service"] == "slow" and r["pid"] for r in s["services"]))
        [slow] = [r for r in loading["services"] if r["service"] == "slow"]
        down = run_cli("down")
    assert down.returncode == 0 and "leftover" not in down.stdout
    assert not pid_alive(slow["pid"])


def test_the_seed_box_on_simulators_swaps_codestral_out_for_codellama(home: Path, port: int) -> None:
    example = Path(__file__).parents[2] / "examples" / "seed-000-box.sim.yaml"
    result = run_cli("up", "-d", "-f", str(example), "--gpus", "4xH200", "--port", str(port), timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)
        for model in ["mistralai/Codestral-22B-v0.1", "llama3.1:8b", "codellama/CodeLlama-34b-Instruct-hf"]:
            assert client.chat.completions.create(model=model, messages=HI, max_tokens=2).choices  # type: ignore[arg-type]
        assert loads(status()) == {
            "deepseek-v2.5": "unloaded",
            "codellama-34b": "loaded",
            "codestral": "unloaded",  # GPU 1: codellama-34b 0.91 + codestral 0.60 > 1
            "llama-3.1-8b": "loaded",  # GPU 3 has room beside anything but deepseek
        }
    finally:
        run_cli("down")


def test_load_unload_and_ps_from_another_shell(box: Box) -> None:
    loaded = run_cli("load", "a")
    assert loaded.returncode == 0 and "a is loaded" in loaded.stdout
    rows = {s["service"]: s for s in json.loads(run_cli("ps", "--json").stdout)["services"]}
    a = rows["a"]["on_demand"]
    assert rows["a"]["state"] == "loaded" and a["state"] == "loaded"
    assert a["claimed_bytes"] > 0.59 * 80 * 2**30 and a["gpus"] == {"0": 0.6}  # 0.6 of an 80 GB H100
    assert 55 < a["unloads_in_seconds"] <= 60 and (a["in_flight"], a["waiting"]) == (0, 0)
    table = run_cli("ps").stdout
    assert "UNLOADS IN" in table and "REQUESTS" in table
    run_cli("load", "b")  # evicts a: they exclude each other
    assert loads(status())["a"] == "unloaded"
    unloaded = run_cli("unload", "b")
    assert unloaded.returncode == 0 and loads(status())["b"] == "unloaded"
    unknown = run_cli("load", "nosuch")
    assert unknown.returncode != 0 and "no service 'nosuch'" in unknown.stderr + unknown.stdout
