"""Background watch over every endpoint: active health probes, engine-metrics scrapes, first-byte deadlines.

Three loops on the gateway's event loop, off the request path. The probe loop GETs each ready
endpoint's `health_url`; a failure (refused, timed out, not 200) counts against the endpoint's
circuit breaker, a success may close a half-open one. A probe that times out while the engine sent
nothing to any request meanwhile means the engine is wedged (stopped, hung): its circuit trips open
at once, and the requests waiting for it to begin an answer that another replica could take expire
now instead of at their deadline. An engine that is merely busy still sends bytes to its running
requests, so a slow probe alone is not taken for a wedge. An endpoint that is sending answers at
its probe's turn (with its circuit closed) needs no probe: its answers say what the probe would.

The scrape loop GETs each `metrics_url` and stores the engine's queue, batch and KV usage as the
endpoint's `EngineLoad`, which `least_load`, `cache_aware` and `ttft_cost` read, and keeps the text
for `/metrics` to re-export (one scrape serves both). A failed scrape leaves the endpoint with no
known queue. The deadline loop ends the first-byte deadlines that are due (deadline.py), so
requests need no timer of their own. Probes and scrapes go over the relay's lean HTTP/1.1 client
(http1.py), in a pool of their own: a connection to an engine is reused by its next check when that
comes within the keep-alive (4 s, below the engines' servers' 5 s), as in a small fleet.

Probes and scrapes stay cheap however many replicas there are: each endpoint takes its turn
(fleet/turns.py: jittered, started in batches a few times a period, at most `CHECKS_PER_SECOND` of each a
second across the fleet, so with 256 replicas every ~5 s instead of every 2 s and 1 s). An engine
resting (its last scrape saw nothing running or waiting, and this gateway has nothing there) is
scraped a few times less often, until this gateway sends it a request. A slow engine cannot make
turns pile up: an endpoint's next turn is set when its check ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from servestack.gateway.fleet.breaker import BreakerState
from servestack.gateway.fleet.endpoint import IDLE, Endpoint, EndpointState, EngineLoad
from servestack.gateway.fleet.gauges import read_gauges
from servestack.gateway.fleet.table import EndpointTable
from servestack.gateway.fleet.turns import TICKS_PER_PERIOD, Turns
from servestack.gateway.relay.http1 import ConnectError, Http1Pool, ProtocolError
from servestack.open_files import exhausted

log = logging.getLogger(__name__)

LOAD_GAUGES = ("waiting", "running", "kv_usage")
MAX_PROBE_SECONDS = 2.0  # a health check that takes longer than this is not answering
STALLED = "stopped answering: its health probe timed out and it sent nothing meanwhile"
LIVE_WINDOW = 0.25  # an endpoint that sent answers this recently, at its probe's turn, is not probed
CONNECTIONS_KEPT = 2  # idle connections kept per engine between checks


class Monitor:
    def __init__(
        self,
        table: EndpointTable,
        *,
        probe_interval: float | None = None,
        scrape_interval: float | None = None,
        deadline_interval: float = 1.0,
        timeout: float = 5.0,
    ) -> None:
        self.table = table
        self.probe_interval = table.routing.probe_interval if probe_interval is None else probe_interval
        self.scrape_interval = table.routing.scrape_interval if scrape_interval is None else scrape_interval
        self.deadline_interval = deadline_interval
        self.timeout = timeout
        self.probe_timeout = min(timeout, max(MAX_PROBE_SECONDS, self.probe_interval))
        self._client: Http1Pool | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._checks: set[asyncio.Task[None]] = set()  # probes and scrapes under way
        self._probes = Turns(self.probe_interval)
        self._scrapes = Turns(self.scrape_interval, rests=_resting)

    async def start(self) -> None:
        if self._client is None:
            self._client = Http1Pool(connect_timeout=self.timeout, max_idle=CONNECTIONS_KEPT)
        self._tasks = [
            asyncio.create_task(self._take_turns(self._probes, self._probe_watched, self._probe_turn)),
            asyncio.create_task(self._take_turns(self._scrapes, self._scrape_watched, self.scrape)),
            asyncio.create_task(_every(self.deadline_interval, self.check_deadlines)),
        ]

    async def stop(self) -> None:
        tasks = [*self._tasks, *self._checks]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        self._checks = set()
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def probe_all(self) -> None:
        """Probe every endpoint now."""
        await asyncio.gather(*(self.probe(e) for e in self._probe_watched()))

    def _probe_watched(self) -> list[Endpoint]:
        return [e for e in self.table.endpoints() if e.health_url and e.state is EndpointState.READY]

    async def _probe_turn(self, endpoint: Endpoint) -> bool | None:
        """A probe, unless the endpoint is answering requests right now (with its circuit closed).

        "Right now": within a short window at its turn, so a replica that stopped is still probed at its
        first turn after it stopped (a stall is found as soon as before, give or take the window).
        """
        vitals = endpoint.vitals
        progress = vitals.progress
        await asyncio.sleep(min(LIVE_WINDOW, self._probes.interval / 4))
        if vitals.progress != progress and vitals.breaker.state is BreakerState.CLOSED:
            return None
        return await self.probe(endpoint)

    async def probe(self, endpoint: Endpoint) -> bool:
        """One health probe; its outcome goes to the endpoint's circuit breaker (a stall trips it)."""
        assert endpoint.health_url is not None
        vitals = endpoint.vitals
        progress = vitals.progress
        stalled = False
        try:
            status, _ = await self.get(endpoint.health_url, self.probe_timeout)
            healthy = status == 200
        except TimeoutError:
            healthy, stalled = False, vitals.progress == progress
        except OSError as exc:
            if exhausted(exc):
                return False  # the gateway had no descriptor to probe with: that says nothing of the engine
            healthy = False
        except (ConnectError, ProtocolError):
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
        """Scrape every endpoint now."""
        await asyncio.gather(*(self.scrape(e) for e in self._scrape_watched()))

    def _scrape_watched(self) -> list[Endpoint]:
        return [e for e in self.table.endpoints() if e.metrics_url and e.state is EndpointState.READY]

    async def _take_turns(
        self, turns: Turns, watched: Callable[[], list[Endpoint]], check: Callable[[Endpoint], Awaitable[object]]
    ) -> None:
        """Check each watched endpoint whenever its turn comes; a slow check delays no other endpoint's turn."""
        loop = asyncio.get_running_loop()

        async def one(endpoint: Endpoint, count: int) -> None:
            try:
                await check(endpoint)
            except Exception:  # a bug in one check must not stop the watch
                log.exception("gateway monitor check of %s failed", endpoint.id)
            finally:
                turns.done(endpoint, count, loop.time())

        while True:
            endpoints = watched()
            for endpoint in turns.take_due(endpoints, loop.time()):
                task = asyncio.create_task(one(endpoint, len(endpoints)))
                self._checks.add(task)
                task.add_done_callback(self._checks.discard)
            await asyncio.sleep(turns.period(len(endpoints)) / TICKS_PER_PERIOD)

    async def scrape(self, endpoint: Endpoint) -> EngineLoad:
        """Read the engine's load from its metrics into `endpoint.vitals.load`."""
        assert endpoint.metrics_url is not None
        try:
            status, body = await self.get(endpoint.metrics_url, self.timeout)
            text = body.decode() if status == 200 else ""
        except (OSError, ConnectError, ProtocolError, UnicodeDecodeError):  # OSError: also a TimeoutError
            text = ""
        endpoint.vitals.metrics = text  # re-exported under servestack names (engine_metrics.py)
        gauges = read_gauges(text, endpoint.metric_names, LOAD_GAUGES) if text else {}
        load = EngineLoad(scraped_at=time.monotonic(), **gauges) if gauges else IDLE
        endpoint.vitals.load = load
        return load

    async def get(self, url: str, seconds: float) -> tuple[int, bytes]:
        """The status and body of a GET of `url`, within `seconds` (else a TimeoutError)."""
        if self._client is None:
            raise RuntimeError("Monitor.start() first")
        async with asyncio.timeout(seconds), self._client.get(url) as response:
            return response.status, await response.read()


def _resting(endpoint: Endpoint) -> bool:
    """Nothing to read from the engine: its last scrape saw it idle, and this gateway has nothing there."""
    load = endpoint.vitals.load
    return endpoint.vitals.in_flight == 0 and load.waiting == 0 and load.running == 0


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
