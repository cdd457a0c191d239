"""The running instance behind `servestack up`: one process that holds the gateway and the supervisor.

It is the only place that knows both: the supervisor reports replicas, the controller turns them
into gateway endpoints. Engines are spawned first; the gateway opens a fraction of a second later,
while they load, and answers 503 until one is ready. On-demand services are not started: they are
listed as unloaded, and loaded, swapped and unloaded by requests (`ondemand.py`). A stack that names a
Ray cluster has its replicas placed on the cluster's nodes (`cluster/`); the rest is the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import math
import os
import socket
import time
from collections.abc import Awaitable, Mapping
from typing import Any, Protocol

from servestack.controller.models import InstanceModels
from servestack.controller.ondemand import OnDemand
from servestack.errors import EngineError, StateError
from servestack.gateway import Endpoint, EndpointState, EndpointTable
from servestack.gateway.edge.listen import bind_socket
from servestack.plan import Plan, ServicePlan
from servestack.settings import Settings
from servestack.stack.models import model_format
from servestack.supervisor import (
    InstanceState,
    Replica,
    ReplicaStatus,
    StateStore,
    Supervisor,
    pid_alive,
    reap_leftovers,
)
from servestack.supervisor.launcher import Launchers
from servestack.supervisor.state import DOWN_STATUSES, ReplicaEvent

# What serving needs beyond the supervisor: uvicorn, aiohttp and the app take ~0.4 s to import.
SERVING_MODULES = (
    "servestack.gateway.edge.build",
    "servestack.gateway.edge.server",
    "servestack.controller.control",
    "servestack.controller.console_source",
)

# How a replica's state reads to the gateway: only READY gets requests. A status missing here reads as
# STOPPED (with the replica's last error), which is what any state that is not on its way back is.
ENDPOINT_STATES = {
    ReplicaStatus.STARTING: EndpointState.STARTING,
    ReplicaStatus.READY: EndpointState.READY,
    ReplicaStatus.RESTARTING: EndpointState.RESTARTING,
    ReplicaStatus.FAILED: EndpointState.FAILED,
    ReplicaStatus.EXITED: EndpointState.STOPPED,
    ReplicaStatus.STOPPING: EndpointState.STOPPED,
    ReplicaStatus.STOPPED: EndpointState.STOPPED,
    ReplicaStatus.DRAINING: EndpointState.DRAINING,
    ReplicaStatus.UNLOADED: EndpointState.UNLOADED,
    ReplicaStatus.SLEEPING: EndpointState.UNLOADED,
}


class Reporter(Protocol):
    """What the controller tells the user while it works (the CLI renders it)."""

    def gateway_started(self, url: str, streams: int) -> None: ...
    def replica_starting(self, replica: Replica) -> None: ...
    def replica_loading(self, replica: Replica, elapsed: float) -> None: ...
    def replica_ready(self, replica: Replica, seconds: float) -> None: ...
    def replica_failed(self, replica: Replica, error: EngineError) -> None: ...
    def replica_event(self, replica: Replica, event: ReplicaEvent) -> None: ...
    def all_ready(self, url: str, models: list[str]) -> None: ...
    def stopping(self) -> None: ...


class Controller:
    def __init__(
        self,
        plan: Plan,
        settings: Settings,
        reporter: Reporter,
        *,
        stack_label: str,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.plan = plan
        self.environ = environ  # engines' secrets (HF token): the environment plus the stack's .env
        self.settings = settings
        self.reporter = reporter
        self.stack_label = stack_label
        self.store = StateStore(settings.state_dir)
        self.table = EndpointTable(plan.stack.routing)
        self._supervisor: Supervisor | None = None
        self.instance: InstanceState | None = None  # once the gateway serves
        self.models = InstanceModels(plan, settings, environ or {}, running=self._running_services)
        self._service_locks: dict[str, asyncio.Lock] = {name: asyncio.Lock() for name in plan.services}
        self.on_demand = OnDemand(self, plan, swap_hold=plan.stack.gateway.swap_hold)

    async def run(self, stop: asyncio.Event, services: list[str] | None = None) -> None:
        """Start `services` (default: all), serve until `stop` is set, then stop every engine, whatever happens."""
        claim_instance(self.store)
        names = [n for n in services or self.plan.services if n not in self.on_demand.slots]
        gateway = self.plan.stack.gateway
        async with contextlib.AsyncExitStack() as serving:  # closes last: engines stop before the gateway
            sock = bind_socket(gateway.host, gateway.port)  # a busy port is refused before any engine starts
            serving.callback(sock.close)
            serving.callback(self.store.clear_replicas)
            async with Supervisor(
                self.store,
                self.settings,
                listener=self._on_replica_change,
                on_event=self.reporter.replica_event,
                environ=self.environ,
                launchers=self._launchers(serving),
            ) as supervisor:
                self._supervisor = supervisor
                # Engines are spawned first and the gateway opens while they load: a small model is
                # ready in about a second, which the gateway's imports would otherwise add to.
                startup = asyncio.ensure_future(asyncio.gather(*(self._start_replicas(n) for n in names)))
                self._list_unloaded(supervisor)
                await self.on_demand.start()
                try:
                    url = await self._open_gateway(sock, serving)
                    if await _first(startup, stop):
                        self.reporter.all_ready(url, self.table.models())
                        await stop.wait()
                finally:
                    startup.cancel()
                    await asyncio.gather(startup, return_exceptions=True)
                    await self.on_demand.stop()
                    self.reporter.stopping()
                    self._supervisor = None

    def _launchers(self, serving: contextlib.AsyncExitStack) -> Launchers | None:
        """Where replicas run: the stack's Ray cluster (left when `serving` closes), else this machine (None)."""
        if self.plan.stack.cluster is None:
            return None
        from servestack.cluster import RayCluster, RayLaunchers

        cluster = RayCluster.connect(self.plan.stack.cluster)
        serving.callback(cluster.close)
        return RayLaunchers(cluster, self.settings.stop_timeout)

    async def _open_gateway(self, sock: socket.socket, serving: contextlib.AsyncExitStack) -> str:
        """Start the gateway on `sock` and the control socket; register their shutdown on `serving`."""
        # A worker thread imports them, so the event loop goes on spawning engines meanwhile.
        await asyncio.to_thread(lambda: [importlib.import_module(m) for m in SERVING_MODULES])
        from servestack.controller.console_source import ControllerConsole
        from servestack.controller.control import ControlServer
        from servestack.gateway.edge.build import build_gateway
        from servestack.gateway.edge.server import GatewayServer, settle_heap

        gateway = self.plan.stack.gateway
        loader = self.on_demand if self.on_demand.slots else None
        app = build_gateway(
            self.table,
            gateway,
            self.settings,
            loader=loader,
            models=self.models,
            console_source=ControllerConsole(self),
        )
        server = GatewayServer(
            app,
            gateway.host,
            gateway.port,
            log_level=self._uvicorn_level(),
            timeouts=gateway.timeouts,
            head_cap=gateway.limits.max_header_bytes,
        )
        open_files = await server.start(sock)
        serving.push_async_callback(server.stop)
        settle_heap()
        self.reporter.gateway_started(server.url, open_files.streams)
        control = ControlServer(self, self.store.control_socket)
        await control.start()
        serving.push_async_callback(control.stop)
        self.instance = InstanceState(
            pid=os.getpid(), gateway_url=server.url, stack=self.stack_label, started_at=time.time()
        )
        self.store.write_instance(self.instance)
        serving.callback(self.store.clear_instance)
        return server.url

    async def start_service(self, name: str) -> None:
        """Start every replica of `name` that is not running (load an on-demand one); block until they are ready."""
        self._service_plan(name)
        if name in self.on_demand.slots:
            await self.on_demand.load_service(name)
        else:
            await self._start_replicas(name)

    async def load_service(self, name: str) -> None:
        """`servestack load`: an on-demand service, loaded now by the plan's rules."""
        self._service_plan(name)
        await self.on_demand.load_service(self._on_demand_name(name))

    async def unload_service(self, name: str) -> None:
        """`servestack unload`: an on-demand service, unloaded once its requests in flight are done."""
        self._service_plan(name)
        await self.on_demand.unload_service(self._on_demand_name(name))

    async def _start_replicas(self, name: str) -> None:
        supervisor = self._require_supervisor()
        service_plan = self._service_plan(name)
        async with self._service_locks[name]:
            running = {r.index for r in self._replicas(name) if r.state.status not in DOWN_STATUSES}
            replicas = [
                supervisor.prepare(service_plan, index)
                for index in range(service_plan.service.replicas)
                if index not in running
            ]
            for replica in replicas:
                self._on_replica_change(replica)
                self.reporter.replica_starting(replica)
            await asyncio.gather(*(self._start_one(supervisor, r) for r in replicas))

    async def stop_service(self, name: str) -> None:
        """Drain every replica of `name` (no new requests, in-flight ones finish), then stop it."""
        supervisor = self._require_supervisor()
        self._service_plan(name)
        async with self._service_locks[name]:
            replicas = self._replicas(name)
            await asyncio.gather(*(self._drain(r) for r in replicas))
            await asyncio.gather(*(supervisor.stop(r) for r in replicas))

    async def restart_service(self, name: str) -> None:
        await self.stop_service(name)
        await self.start_service(name)

    # What the on-demand loader asks for (slots.Engines).

    async def load_replicas(self, name: str) -> str:
        """Wake the service's sleeping replicas, else start them: `wake` or `cold`."""
        supervisor = self._require_supervisor()
        async with self._service_locks[name]:
            asleep = [r for r in self._replicas(name) if r.state.status is ReplicaStatus.SLEEPING]
            if asleep:
                try:
                    await asyncio.gather(*(supervisor.wake(r) for r in asleep))
                    return "wake"
                except EngineError:  # a wake that fails is a cold start
                    await asyncio.gather(*(supervisor.stop(r, unloaded="did not wake") for r in asleep))
        await self._start_replicas(name)
        return "cold"

    async def unload_replicas(self, name: str, why: str, *, sleep: bool) -> bool:
        """Drain the service's replicas (no request is cut), then put them to sleep or stop them; True: asleep."""
        supervisor = self._require_supervisor()
        async with self._service_locks[name]:
            replicas = [r for r in self._replicas(name) if r.state.status not in DOWN_STATUSES]
            awake = [r for r in replicas if r.state.status is not ReplicaStatus.SLEEPING]
            await asyncio.gather(*(self._drain(r, math.inf) for r in awake))
            if sleep and awake:
                try:
                    await asyncio.gather(*(supervisor.sleep(r, why) for r in awake))
                    return True
                except EngineError:
                    pass  # an engine that does not sleep is stopped
            await asyncio.gather(*(supervisor.stop(r, unloaded=why) for r in replicas))
            return False

    def on_demand_snapshot(self) -> list[dict[str, object]]:
        return self.on_demand.snapshot()

    @property
    def running(self) -> bool:
        """Whether the engines are supervised now (not while starting up or shutting down)."""
        return self._supervisor is not None

    def replicas(self) -> list[Replica]:
        """Every replica the supervisor knows, on-demand ones included (none unless `running`)."""
        return list(self._supervisor.replicas.values()) if self._supervisor is not None else []

    def service_ready(self, name: str) -> bool:
        return any(r.state.status is ReplicaStatus.READY for r in self._replicas(name))

    def _list_unloaded(self, supervisor: Supervisor) -> None:
        """On-demand services start unloaded: the gateway knows their names, status shows them."""
        for name in self.on_demand.slots:
            service_plan = self.plan.services[name]
            for index in range(service_plan.service.replicas):
                supervisor.add_unloaded(supervisor.prepare(service_plan, index))

    def _on_demand_name(self, name: str) -> str:
        if name not in self.on_demand.slots:
            raise StateError(
                f"{name!r} is loaded all the time (load: always)", fix="`servestack stop` or `restart` steer it"
            )
        return name

    # What `servestack rm` asks for while this instance runs.

    async def remove_model(self, name: str) -> dict[str, object]:
        """Remove a model's files unless a running service uses it (`servestack rm` while this instance runs)."""
        removed = await self.models.remove(name)
        return {"model": removed.name, "location": str(removed.location), "bytes": removed.size}

    def _running_services(self) -> set[str]:
        """Services using their model now, and on-demand ones, which load it at the next request."""
        if self._supervisor is None:
            return set()
        running = {r.plan.name for r in self._supervisor.replicas.values() if r.state.status not in DOWN_STATUSES}
        return running | set(self.on_demand.slots)

    async def _start_one(self, supervisor: Supervisor, replica: Replica) -> None:
        try:
            seconds = await supervisor.start(replica, on_tick=self.reporter.replica_loading)
        except EngineError as error:
            self.reporter.replica_failed(replica, error)
            raise
        self.reporter.replica_ready(replica, seconds)

    async def _drain(self, replica: Replica, timeout: float | None = None) -> None:
        """No new requests to `replica`; in-flight ones get `timeout` (default `drain_timeout`) to finish."""
        self._require_supervisor().mark_draining(replica)
        await self.table.drain(replica.state.key, self.settings.drain_timeout if timeout is None else timeout)

    def _replicas(self, name: str) -> list[Replica]:
        supervisor = self._require_supervisor()
        return [r for r in supervisor.replicas.values() if r.plan.name == name]

    def _service_plan(self, name: str) -> ServicePlan:
        try:
            return self.plan.services[name]
        except KeyError:
            known = ", ".join(self.plan.services)
            raise StateError(f"no service {name!r} in the running stack (services: {known})") from None

    def _require_supervisor(self) -> Supervisor:
        if self._supervisor is None:
            raise StateError("servestack is not running its engines right now (starting up or shutting down)")
        return self._supervisor

    def _on_replica_change(self, replica: Replica) -> None:
        status = replica.state.status
        engine = replica.engine
        self.table.upsert(
            Endpoint(
                id=replica.state.key,
                service=replica.plan.name,
                models=replica.config.served_names,
                base_url=replica.base_url,
                state=ENDPOINT_STATES[status],
                engine=engine.name,
                health_url=replica.base_url + engine.health_path,
                metrics_url=replica.base_url + engine.metrics_path if engine.metrics_path else None,
                metric_names=engine.metric_names,
                context_length=replica.plan.context_window,
                last_error=replica.state.why_not_ready(),
                dialect=engine.dialect,
                native_routes=engine.native_routes,
                model_format=model_format(replica.config.model),
                on_demand=replica.state.on_demand,
                defaults=replica.plan.service.defaults.as_request(),
                node=replica.state.node_name or "",
            )
        )
        if replica.state.on_demand and self._supervisor is not None:
            running = any(r.state.status not in DOWN_STATUSES for r in self._replicas(replica.plan.name))
            why = "stopped" if status is ReplicaStatus.STOPPED else "exited"
            self.on_demand.replica_changed(replica.plan.name, running, why)

    def _uvicorn_level(self) -> str:
        return "warning" if self.settings.log_level == "info" else self.settings.log_level


async def _first(startup: Awaitable[Any], stop: asyncio.Event) -> bool:
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
