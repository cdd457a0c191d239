"""The running instance behind `servestack up`: one process that holds the gateway and the supervisor.

It is the only place that knows both: the supervisor reports replicas, the controller turns them
into gateway endpoints. The gateway starts first so clients get a clear 503 while engines load.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Coroutine
from typing import Any, Protocol

from servestack.engines import ENGINES
from servestack.errors import EngineError, StateError
from servestack.gateway import Endpoint, EndpointTable, GatewayServer
from servestack.gateway.build import build_gateway
from servestack.gateway.engine_metrics import EngineMetricsSpec
from servestack.gateway.server import settle_heap
from servestack.plan import Plan
from servestack.settings import Settings
from servestack.supervisor import (
    InstanceState,
    Replica,
    ReplicaStatus,
    StateStore,
    Supervisor,
    pid_alive,
    reap_leftovers,
)


class Reporter(Protocol):
    """What the controller tells the user while it works (the CLI renders it)."""

    def gateway_started(self, url: str) -> None: ...
    def replica_starting(self, replica: Replica) -> None: ...
    def replica_loading(self, replica: Replica, elapsed: float) -> None: ...
    def replica_ready(self, replica: Replica, seconds: float) -> None: ...
    def replica_failed(self, replica: Replica, error: EngineError) -> None: ...
    def replica_exited(self, replica: Replica) -> None: ...
    def all_ready(self, url: str, models: list[str]) -> None: ...
    def stopping(self) -> None: ...


class Controller:
    def __init__(self, plan: Plan, settings: Settings, reporter: Reporter, *, stack_label: str) -> None:
        self.plan = plan
        self.settings = settings
        self.reporter = reporter
        self.stack_label = stack_label
        self.store = StateStore(settings.state_dir)
        self.table = EndpointTable()

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until `stop` is set; stop every engine on the way out, whatever happens."""
        claim_instance(self.store)
        gateway = self.plan.stack.gateway
        app = build_gateway(self.table, gateway, self.settings, engines=engine_metrics_catalog())
        server = GatewayServer(
            app, gateway.host, gateway.port, log_level=self._uvicorn_level(), timeouts=gateway.timeouts
        )
        await server.start()
        settle_heap()
        self.reporter.gateway_started(server.url)
        self.store.write_instance(
            InstanceState(pid=os.getpid(), gateway_url=server.url, stack=self.stack_label, started_at=time.time())
        )
        try:
            async with Supervisor(self.store, self.settings, listener=self._on_replica_change) as supervisor:
                if await _first(self._start_all(supervisor), stop):
                    self.reporter.all_ready(server.url, self.table.models())
                    await stop.wait()
                self.reporter.stopping()
        finally:
            await server.stop()
            self.store.clear_replicas()
            self.store.clear_instance()

    async def _start_all(self, supervisor: Supervisor) -> None:
        replicas = [supervisor.prepare(service_plan) for service_plan in self.plan.services.values()]
        for replica in replicas:
            self._on_replica_change(replica)
            self.reporter.replica_starting(replica)
        await asyncio.gather(*(self._start_one(supervisor, r) for r in replicas))

    async def _start_one(self, supervisor: Supervisor, replica: Replica) -> None:
        try:
            seconds = await supervisor.start(replica, on_tick=self.reporter.replica_loading)
        except EngineError as error:
            self.reporter.replica_failed(replica, error)
            raise
        self.reporter.replica_ready(replica, seconds)

    def _on_replica_change(self, replica: Replica) -> None:
        ready = replica.state.status is ReplicaStatus.READY
        previous = self.table.get(replica.state.key)
        self.table.upsert(
            Endpoint(
                id=replica.state.key,
                service=replica.plan.name,
                models=replica.config.served_names,
                base_url=replica.base_url,
                ready=ready,
                engine=replica.engine.name,
            )
        )
        if previous and previous.ready and replica.state.status is ReplicaStatus.FAILED:
            self.reporter.replica_exited(replica)

    def _uvicorn_level(self) -> str:
        return "warning" if self.settings.log_level == "info" else self.settings.log_level


async def _first(startup: Coroutine[Any, Any, None], stop: asyncio.Event) -> bool:
    """Run `startup` unless `stop` comes first. True when startup finished; its errors propagate."""
    start_task = asyncio.ensure_future(startup)
    stop_task = asyncio.ensure_future(stop.wait())
    await asyncio.wait({start_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
    stop_task.cancel()
    if not start_task.done():
        start_task.cancel()
        await asyncio.gather(start_task, return_exceptions=True)
        return False
    start_task.result()
    return True


def engine_metrics_catalog() -> dict[str, EngineMetricsSpec]:
    """Where each engine serves Prometheus metrics and its names for the common keys (for the gateway)."""
    return {
        name: EngineMetricsSpec(path=engine.metrics_path, names=engine.metric_names)
        for name, engine in ENGINES.items()
        if engine.metrics_path and engine.metric_names
    }


def claim_instance(store: StateStore) -> None:
    """Refuse to start a second instance on the same state dir; forget a dead one."""
    instance = store.read_instance()
    if instance is not None and pid_alive(instance.pid) and instance.pid != os.getpid():
        raise StateError(
            f"servestack is already running (pid {instance.pid}, {instance.gateway_url})",
            fix="`servestack down` stops it; or set SERVESTACK_HOME to run a second instance",
        )
    store.clear_instance()
    reap_leftovers(store, timeout=5.0)
