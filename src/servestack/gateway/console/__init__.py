"""The web console at /ui: see and steer the whole stack from a browser.

    static.py   the page (plain ES modules, no build step) at /ui; the edge sends browsers' `/` there
    api.py      the JSON admin routes it reads: overview, traffic, plan, logs (SSE), actions
    access.py   who may read and who may act (the admin key; actions from this machine when the stack says so)
    source.py   the seam the controller implements: the records `status`, `plan`, `logs` and the control
                socket use, so the console has no data of its own
    traffic.py  a short in-memory history sampled from the gateway's own metrics
    actions.py  start / stop / restart / load / unload as tasks with a record of how they went

`Console` assembles them for `build_gateway`: its routes, the paths served without a key, its home, and its
background work (the traffic sampler) started and stopped with the gateway.
"""

from __future__ import annotations

from servestack.asgi import Handler
from servestack.gateway.console.access import ConsoleAccess
from servestack.gateway.console.api import ConsoleApi
from servestack.gateway.console.source import ACTIONS, ConsoleSource, LogLine
from servestack.gateway.console.static import PREFIX, StaticFiles
from servestack.gateway.console.traffic import TrafficHistory
from servestack.gateway.telemetry.metrics import GatewayMetrics

__all__ = ["ACTIONS", "Console", "ConsoleAccess", "ConsoleSource", "LogLine"]


class Console:
    def __init__(
        self,
        access: ConsoleAccess,
        source: ConsoleSource | None,
        *,
        metrics: GatewayMetrics | None,
    ) -> None:
        """`source`: the running instance (None: a gateway without the controller serves traffic only);
        `metrics`: the gateway's request metrics (None: metrics are off, and so is the traffic page)."""
        self.static = StaticFiles()
        self.traffic = TrafficHistory(metrics.collect) if metrics is not None else None
        self.api = ConsoleApi(access, source, self.traffic)

    def routes(self) -> dict[tuple[str, str], Handler]:
        return {**self.static.routes(), **self.api.routes()}

    @property
    def public(self) -> frozenset[str]:
        return self.static.public

    @property
    def home(self) -> str:
        """Where the edge sends a browser that opens `/`."""
        return PREFIX + "/"

    async def start(self) -> None:
        if self.traffic is not None:
            await self.traffic.start()

    async def stop(self) -> None:
        await self.api.stop()
        if self.traffic is not None:
            await self.traffic.stop()
