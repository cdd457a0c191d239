"""Routing on three simulator replicas: prefixes stick to a replica; full queues are avoided."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from servestack.gateway.fleet.routing import TtftCost
from servestack.gateway.fleet.routing.ttft_cost import DEFAULT_PREFILL_RATE
from servestack.sim import SimConfig
from tests.gateway.routing.cluster import MODEL, start_cluster

pytestmark = pytest.mark.anyio

QUICK = SimConfig(prefill_rate=8000, decode_rate=200, time_scale=0.05)
# About 2,000 tokens of the simulator's tokenizer per system prompt.
SYSTEMS = {g: f"You are assistant {g}. " + "Answer in the style of a ship's log, briefly. " * 200 for g in "xyz"}


@pytest.mark.parametrize("policy", ["cache_aware", "ttft_cost"])
async def test_a_repeated_long_prefix_stays_on_one_replica_and_groups_spread(policy: str) -> None:
    async with start_cluster([QUICK] * 3, policy=policy) as cluster:
        served: dict[str, list[str]] = {g: [] for g in SYSTEMS}
        for turn in range(6):
            answers = await asyncio.gather(
                *(cluster.chat([{"role": "system", "content": s}, {"role": "user", "content": f"q{turn}"}])
                  for s in SYSTEMS.values())
            )  # fmt: skip
            for group, (status, replica) in zip(SYSTEMS, answers, strict=True):
                assert status == 200
                served[group].append(replica)
        homes = {g: Counter(replicas).most_common(1)[0] for g, replicas in served.items()}
        assert all(count >= 5 for _, count in homes.values()), served
        assert {home for home, _ in homes.values()} == {"r0", "r1", "r2"}, served  # load spread: one group each
        states = [await cluster.replica_state(i) for i in range(3)]
        assert all(s["generation_requests"] >= 5 for s in states)


async def test_least_load_avoids_a_replica_whose_queue_is_full() -> None:
    slow = SimConfig(max_running=1, decode_rate=5, time_scale=1.0)
    async with start_cluster([QUICK, slow, QUICK], policy="least_load") as cluster:
        blocker = {"model": MODEL, "messages": [{"role": "user", "content": "long story"}], "max_tokens": 500}
        backlog = [asyncio.create_task(cluster.client.post(cluster.sims[1].url + "/v1/chat/completions", json=blocker))
                   for _ in range(4)]  # fmt: skip
        try:
            for _ in range(200):  # the scrape sees r1's queue: 1 running, 3 waiting
                if cluster.endpoint(1).vitals.load.waiting >= 3:
                    break
                await asyncio.sleep(0.02)
            assert cluster.endpoint(1).vitals.load.waiting >= 3
            replicas = [(await cluster.chat([{"role": "user", "content": f"hi {i}"}]))[1] for i in range(12)]
            assert "r1" not in replicas
            assert set(replicas) == {"r0", "r2"}
        finally:
            for task in backlog:
                task.cancel()
            await asyncio.gather(*backlog, return_exceptions=True)


async def test_ttft_cost_learns_from_streams_and_leaves_no_queued_work_behind() -> None:
    async with start_cluster([QUICK] * 3, policy="ttft_cost") as cluster:
        policy = cluster.table.pool(MODEL).policy
        assert isinstance(policy, TtftCost)
        for turn in range(4):
            results = await asyncio.gather(
                *(cluster.stream([{"role": "system", "content": s}, {"role": "user", "content": f"q{turn}"}])
                  for s in SYSTEMS.values())
            )  # fmt: skip
            assert all(events[-1]["choices"][0]["finish_reason"] for events, _ in results)
        assert any(policy.rate(f"sim.{i}") != DEFAULT_PREFILL_RATE for i in range(3))
        for i in range(3):
            assert policy.estimate(cluster.endpoint(i), 1, []) < 0.01  # nothing queued, nothing decoding
