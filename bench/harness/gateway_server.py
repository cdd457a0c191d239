"""`python gateway_server.py PORT UPSTREAM_URL HOME`: servestack's gateway as `servestack up` serves it, in
front of an engine it did not launch (bench/streams.py's slow-drip upstream).

The same parts as `up`: the gateway built from a stack file's `gateway:` section at its defaults
(`build_gateway`), served by `GatewayServer` on uvloop, the heap settled after startup; only the
controller and its supervisor are left out. The upstream serves the model `sim`, probed at /health
and scraped at /metrics as an engine would be.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import uvloop

from servestack.gateway import Endpoint, EndpointTable, GatewayServer
from servestack.gateway.edge.build import build_gateway
from servestack.gateway.edge.server import settle_heap
from servestack.settings import Settings
from servestack.stack import GatewayConfig


async def serve(port: int, upstream: str, home: Path) -> None:
    table = EndpointTable()
    endpoint = Endpoint(
        "sim.0", "sim", ("sim",), upstream, ready=True, engine="sim",
        health_url=upstream + "/health", metrics_url=upstream + "/metrics",
    )  # fmt: skip
    table.upsert(endpoint)
    config = GatewayConfig()
    app = build_gateway(table, config, Settings(home=home))
    server = GatewayServer(app, "127.0.0.1", port, timeouts=config.timeouts, head_cap=config.limits.max_header_bytes)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await server.start()
    settle_heap()
    print(f"listening on {server.url}", flush=True)
    await stop.wait()
    await server.stop()


if __name__ == "__main__":
    uvloop.run(serve(int(sys.argv[1]), sys.argv[2], Path(sys.argv[3])))
