"""A gateway in front of a few simulators, all in the test's event loop, on free 127.0.0.1 ports."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any

import httpx
import orjson

from servestack.engines.sim import METRIC_NAMES
from servestack.gateway import Endpoint, EndpointTable, Gateway, GatewayServer, Upstream
from servestack.sim import SimConfig, SimServer
from servestack.stack import Routing

MODEL = "sim"
FAST = Routing(probe_interval=0.05, scrape_interval=0.05, open_seconds=0.3)


@dataclass
class Cluster:
    url: str
    table: EndpointTable
    sims: list[SimServer]
    client: httpx.AsyncClient
    gateway: Gateway

    def endpoint(self, i: int) -> Endpoint:
        endpoint = self.table.get(f"sim.{i}")
        assert endpoint is not None
        return endpoint

    async def chat(self, messages: list[dict[str, str]], **extra: Any) -> tuple[int, str]:
        """Send one chat request; the answer's status and the replica (`r0`, `r1`, …) that served it."""
        body = {"model": MODEL, "messages": messages, "max_tokens": 4, **extra}
        response = await self.client.post("/v1/chat/completions", json=body)
        replica = response.json().get("system_fingerprint", "").removeprefix("sim:") if response.is_success else ""
        return response.status_code, replica

    async def stream(self, messages: list[dict[str, str]], **extra: Any) -> tuple[list[dict[str, Any]], str]:
        """Stream one chat answer; its events (parsed) and the replica that served it."""
        body = {"model": MODEL, "messages": messages, "max_tokens": 4, "stream": True, **extra}
        async with self.client.stream("POST", "/v1/chat/completions", json=body) as response:
            raw = b"".join([chunk async for chunk in response.aiter_raw()])
        events = [orjson.loads(e[6:]) for e in raw.split(b"\n\n") if e.startswith(b"data: {")]
        replica = next((e["system_fingerprint"][4:] for e in events if e.get("system_fingerprint")), "")
        return events, replica

    async def replica_state(self, i: int) -> dict[str, Any]:
        response = await self.client.get(self.sims[i].url + "/sim/state")
        return dict(response.json())

    async def set_faults(self, i: int, **faults: Any) -> None:
        response = await self.client.post(self.sims[i].url + "/sim/faults", json=faults)
        assert response.status_code == 200


@asynccontextmanager
async def start_cluster(
    configs: list[SimConfig],
    routing: Routing = FAST,
    clock: Callable[[], float] = time.monotonic,
    upstream: Upstream | None = None,
    **changes: Any,
) -> AsyncIterator[Cluster]:
    """Simulators from `configs` (port 0 → a free one), each one endpoint of the pool `sim`, and a gateway.

    `changes` are changes to `routing`; `clock` is what the breakers and policies see as time;
    `upstream` is the gateway's client to the simulators (default: the gateway's own).
    """
    sims = [SimServer(replace(c, port=0, replica=f"r{i}", models=(MODEL,))) for i, c in enumerate(configs)]
    table = EndpointTable(routing.model_copy(update=changes), clock=clock)
    gateway = Gateway(table, upstream=upstream)
    server = GatewayServer(gateway, "127.0.0.1", 0)
    try:
        for i, sim in enumerate(sims):
            await sim.start()
            table.upsert(sim_endpoint(i, sim))
        await server.start()
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            yield Cluster(server.url, table, sims, client, gateway)
    finally:
        for sim in sims:  # first: their cut connections end whatever the gateway still relays
            await sim.stop()
        await server.stop()


def sim_endpoint(i: int, sim: SimServer) -> Endpoint:
    """The endpoint the controller would report for a ready simulator replica."""
    return Endpoint(
        f"sim.{i}", "sim", (MODEL,), sim.url, ready=True, engine="sim",
        health_url=sim.url + "/health", metrics_url=sim.url + "/metrics", metric_names=METRIC_NAMES,
    )  # fmt: skip


def spread(replicas: list[str]) -> Counter[str]:
    return Counter(replicas)


def conversation(system: str, question: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": system}, {"role": "user", "content": question}]
