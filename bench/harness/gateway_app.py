"""The servestack gateway app alone, for serving it under different ASGI servers (uvicorn, granian).

`BENCH_UPSTREAM` is the engine's base URL; every model name in `BENCH_MODELS` (default `sim`) is
routed to it. This isolates the HTTP server's share of the gateway's cost from the controller's.
"""

from __future__ import annotations

import os

from servestack.gateway import Endpoint, EndpointTable, Gateway

table = EndpointTable()
table.upsert(
    Endpoint(
        id="bench.0",
        service="bench",
        models=tuple(os.environ.get("BENCH_MODELS", "sim").split(",")),
        base_url=os.environ["BENCH_UPSTREAM"],
        ready=True,
    )
)
app = Gateway(table)
