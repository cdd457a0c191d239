"""The routing benchmark's workloads (bench/routing.py): seeded shared-prefix and multi-turn requests,
streamed through a router with their time to first token measured in simulated seconds."""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass

import aiohttp

WORDS = [
    "harbor", "ledger", "signal", "copper", "meadow", "lantern", "orbit", "pebble", "quartz", "river", "saddle",
    "timber", "velvet", "walnut", "yonder", "zephyr", "anchor", "basalt", "cinder", "dapple", "ember", "fathom",
    "gossamer", "hollow", "ivory", "juniper", "kestrel",
]  # fmt: skip


@dataclass(frozen=True)
class Scenario:
    replicas: int = 4
    time_scale: float = 0.5
    prefill_rate: float = 5_000.0
    decode_rate: float = 12.5  # per sequence: 64 tokens take 5.1 s, like 256 tokens at 50/s, in a quarter of the chunks
    max_running: int = 32
    kv_capacity: int = 131_072
    cache_capacity: int = 65_536
    rate: float = 20.0  # shared-prefix arrivals per simulated second
    conversations_per_second: float = 4.0  # multi-turn conversation starts per simulated second
    ttft_slo: float = 1.0  # simulated seconds
    seed: int = 7

    def sim_flags(self) -> list[str]:
        return [
            "--time-scale", str(self.time_scale), "--prefill-rate", str(self.prefill_rate),
            "--decode-rate", str(self.decode_rate), "--max-running", str(self.max_running),
            "--kv-capacity", str(self.kv_capacity), "--cache-capacity", str(self.cache_capacity),
        ]  # fmt: skip


@dataclass
class Request:
    at: float  # simulated seconds after the start
    messages: list[dict[str, str]]
    max_tokens: int


@dataclass
class Conversation:
    start: float
    system: str
    questions: list[str]
    think: list[float]
    max_tokens: int = 64


@dataclass
class Outcome:
    ttft: float | None = None  # simulated seconds; None: failed
    error: str = ""
    answer: str = ""


def words(rng: random.Random, count: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(count))


def shared_prefix(s: Scenario, groups: int = 64, per_group: int = 16) -> list[Request]:
    rng = random.Random(s.seed)
    # ~1.3 simulator tokens per word: 1,575 words ≈ 2,048 tokens; a unique head keeps groups apart.
    systems = [f"System prompt of group {g}. " + words(rng, 1575) for g in range(groups)]
    prompts = [(g, f"Question {g}.{i}: " + words(rng, 98)) for g in range(groups) for i in range(per_group)]
    rng.shuffle(prompts)
    at, requests = 0.0, []
    for g, question in prompts:
        at += rng.expovariate(s.rate)
        messages = [{"role": "system", "content": systems[g]}, {"role": "user", "content": question}]
        requests.append(Request(at, messages, max_tokens=64))
    return requests


def multi_turn(s: Scenario, count: int = 64, turns: int = 6) -> list[Conversation]:
    rng = random.Random(s.seed + 1)
    system = "You are a helpful assistant for a shipping company. " + words(rng, 300)
    at, conversations = 0.0, []
    for c in range(count):
        at += rng.expovariate(s.conversations_per_second)
        questions = [f"User {c}, turn {t}: " + words(rng, 90) for t in range(turns)]
        conversations.append(Conversation(at, system, questions, [rng.expovariate(1.0) for _ in range(turns)]))
    return conversations


async def stream_chat(
    session: aiohttp.ClientSession, url: str, messages: list[dict[str, str]], max_tokens: int, scale: float
) -> Outcome:
    body = {"model": "sim", "messages": messages, "max_tokens": max_tokens, "stream": True}
    started = time.perf_counter()
    outcome = Outcome()
    parts: list[str] = []
    try:
        async with session.post(url + "/v1/chat/completions", json=body) as resp:
            if resp.status != 200:
                return Outcome(error=f"HTTP {resp.status}")
            async for line in resp.content:
                if outcome.ttft is None:
                    outcome.ttft = (time.perf_counter() - started) / scale
                if line.startswith(b"data: {"):
                    event = json.loads(line[6:])
                    if "error" in event:
                        return Outcome(error="stream error")
                    delta = event["choices"][0].get("delta", {}) if event.get("choices") else {}
                    parts.append(delta.get("content") or "")
    except (aiohttp.ClientError, TimeoutError) as exc:
        return Outcome(error=type(exc).__name__)
    outcome.answer = "".join(parts)
    return outcome


def client_session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600), connector=aiohttp.TCPConnector(limit=0))


async def run_shared_prefix(url: str, s: Scenario) -> list[Outcome]:
    requests = shared_prefix(s)
    async with client_session() as session:
        origin = time.perf_counter()

        async def one(r: Request) -> Outcome:
            await asyncio.sleep(max(0.0, origin + r.at * s.time_scale - time.perf_counter()))
            return await stream_chat(session, url, r.messages, r.max_tokens, s.time_scale)

        return list(await asyncio.gather(*(one(r) for r in requests)))


async def run_multi_turn(url: str, s: Scenario) -> list[Outcome]:
    conversations = multi_turn(s)
    async with client_session() as session:
        origin = time.perf_counter()

        async def one(c: Conversation) -> list[Outcome]:
            await asyncio.sleep(max(0.0, origin + c.start * s.time_scale - time.perf_counter()))
            messages = [{"role": "system", "content": c.system}]
            outcomes = []
            for question, think in zip(c.questions, c.think, strict=True):
                messages.append({"role": "user", "content": question})
                outcome = await stream_chat(session, url, messages, c.max_tokens, s.time_scale)
                outcomes.append(outcome)
                messages.append({"role": "assistant", "content": outcome.answer})
                await asyncio.sleep(think * s.time_scale)
            return outcomes

        nested = await asyncio.gather(*(one(c) for c in conversations))
        return [o for outcomes in nested for o in outcomes]


WORKLOADS = {"shared-prefix": run_shared_prefix, "multi-turn": run_multi_turn}
