"""Background watch over every endpoint: active health probes, engine-metrics scrapes, first-byte deadlines.

Three loops on the gateway's event loop, off the request path. The probe loop GETs each ready
endpoint's `health_url`; a failure (refused, timed out, not 200) counts against the endpoint's
circuit breaker, a success may close a half-open one. A probe that times out while the engine sent
nothing to any request meanwhile means the engine is wedged (stopped, hung): its circuit trips open
at once, and the requests waiting for it to begin an answer that another replica could take expire
now instead of at their deadline. An engine that is merely busy still sends bytes to its running
requests, so a slow probe alone is not taken for a wedge.

The scrape loop GETs each `metrics_url` and stores the engine's queue, batch and KV usage as the
endpoint's `EngineLoad`, which `least_load`, `cache_aware` and `ttft_cost` read, and keeps the text
for `/metrics` to re-export (one scrape serves both). A failed scrape leaves the endpoint with no
known queue. The deadline loop ends the first-byte deadlines that are due (relay/deadline.py), so
requests need no timer of their own. Each loop waits `interval` after a round, so a slow engine
cannot make rounds pile up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

import aiohttp

from servestack.gateway.fleet.breaker import BreakerState
from servestack.gateway.fleet.endpoint import IDLE, Endpoint, EndpointState, EngineLoad
from servestack.gateway.fleet.gauges import read_gauges
from servestack.gateway.fleet.table import EndpointTable
from servestack.open_files import exhausted

log = logging.getLogger(__name__)

LOAD_GAUGES = ("waiting", "running", "kv_usage")
MAX_PROBE_SECONDS = 2.0  # a health check that takes longer than this is not answering
STALLED = "stopped answering: its health probe timed out and it sent nothing meanwhile"


class Monitor:
    def __init__(
        self,
        table: EndpointTable,
        *,
        probe_interval: float | None = None,
        scrape_interval: float | None = None,
        deadline_interval: float = 1.0,
        timeout: float = 5.0,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.table = table
        self.probe_interval = table.routing.probe_interval if probe_interval is None else probe_interval
        self.scrape_interval = table.routing.scrape_interval if scrape_interval is None else scrape_interval
        self.deadline_interval = deadline_interval
        self.timeout = timeout
        self.probe_timeout = aiohttp.ClientTimeout(total=min(timeout, max(MAX_PROBE_SECONDS, self.probe_interval)))
        self._session = session
        self._own_session = session is None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                connector=aiohttp.TCPConnector(limit=32),
                skip_auto_headers=("User-Agent",),
            )
        self._tasks = [
            asyncio.create_task(_every(self.probe_interval, self.probe_all)),
            asyncio.create_task(_every(self.scrape_interval, self.scrape_all)),
            asyncio.create_task(_every(self.deadline_interval, self.check_deadlines)),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def probe_all(self) -> None:
        watched = [e for e in self.table.endpoints() if e.health_url and e.state is EndpointState.READY]
        await asyncio.gather(*(self.probe(e) for e in watched))

    async def probe(self, endpoint: Endpoint) -> bool:
        """One health probe; its outcome goes to the endpoint's circuit breaker (a stall trips it)."""
        assert endpoint.health_url is not None
        vitals = endpoint.vitals
        progress = vitals.progress
        stalled = False
        try:
            async with self.session.get(endpoint.health_url, timeout=self.probe_timeout) as resp:
                await resp.read()
                healthy = resp.status == 200
        except TimeoutError:
            healthy, stalled = False, vitals.progress == progress
        except aiohttp.ClientConnectorError as exc:
            if exhausted(exc.os_error):
                return False  # the gateway had no descriptor to probe with: that says nothing of the engine
            healthy = False
        except aiohttp.ClientError:
            healthy = False
        if healthy:
            vitals.breaker.probe_succeeded()
        elif stalled:
            stall(endpoint)
        else:
            vitals.breaker.failed()
        return healthy

    async def check_deadlines(self) -> None:
        now = asyncio.get_running_loop().time()
        for endpoint in self.table.endpoints():
            for deadline in list(endpoint.vitals.waiting):
                deadline.check(now)

    async def scrape_all(self) -> None:
        watched = [e for e in self.table.endpoints() if e.metrics_url and e.state is EndpointState.READY]
        await asyncio.gather(*(self.scrape(e) for e in watched))

    async def scrape(self, endpoint: Endpoint) -> EngineLoad:
        """Read the engine's load from its metrics into `endpoint.vitals.load`."""
        assert endpoint.metrics_url is not None
        try:
            async with self.session.get(endpoint.metrics_url) as resp:
                text = await resp.text() if resp.status == 200 else ""
        except (aiohttp.ClientError, TimeoutError, UnicodeDecodeError):
            text = ""
        endpoint.vitals.metrics = text  # re-exported under servestack names (engine_metrics.py)
        gauges = read_gauges(text, endpoint.metric_names, LOAD_GAUGES) if text else {}
        load = EngineLoad(scraped_at=time.monotonic(), **gauges) if gauges else IDLE
        endpoint.vitals.load = load
        return load

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("Monitor.start() first")
        return self._session


def stall(endpoint: Endpoint) -> None:
    """The engine is wedged: no new requests for a while, and the waiting ones that can go elsewhere, go."""
    vitals = endpoint.vitals
    if vitals.breaker.state is not BreakerState.OPEN:  # once per stall, not once per probe
        log.warning("the engine of %s (%s) stopped answering; no requests for it now", endpoint.id, endpoint.base_url)
    vitals.breaker.trip()
    for deadline in [d for d in vitals.waiting if d.retryable]:
        deadline.expire(STALLED)


async def _every(interval: float, work: Callable[[], Awaitable[None]]) -> None:
    while True:
        try:
            await work()
        except Exception:  # a bug in one round must not stop the watch
            log.exception("gateway monitor round failed")
        await asyncio.sleep(interval)
