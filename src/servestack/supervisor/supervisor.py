"""The supervisor: start engine replicas, wait until they are ready, watch them, stop them.

It owns the `Replica` records and mirrors each one to the state store; whoever needs to follow
replicas (the controller feeding the gateway) passes a listener.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from servestack.engines import EngineConfig, get_engine
from servestack.errors import EngineError, ServestackError
from servestack.gpus.nvidia_smi import read_driver_cuda
from servestack.plan import ServicePlan
from servestack.runtimes import Launch, container_name, needs_driver_cuda
from servestack.settings import Settings
from servestack.supervisor import history
from servestack.supervisor.calibration import measure
from servestack.supervisor.launch import build_launch
from servestack.supervisor.launcher import Launchers, LocalLaunchers, Place
from servestack.supervisor.lineage import Mark
from servestack.supervisor.preflight import check_flags
from servestack.supervisor.readiness import engine_died, wait_ready
from servestack.supervisor.replica import EventListener, Replica, ReplicaListener, TickListener, free_port
from servestack.supervisor.restart import Backoff, RestartTracker
from servestack.supervisor.sleeping import call_engine
from servestack.supervisor.state import (
    DOWN_STATUSES,
    ReplicaEvent,
    ReplicaState,
    ReplicaStatus,
    StateStore,
    current_boot_id,
)
from servestack.supervisor.watchdog import Watchdog

if TYPE_CHECKING:
    import aiohttp


class Supervisor:
    """Starts, watches, restarts and stops engine replicas.

    `environ` is where engines' secrets come from (the HF token; default: this process's
    environment); `driver_cuda` reads the NVIDIA driver's CUDA version when a service chooses
    among CUDA environments (default: `nvidia-smi`). `launchers` say where replicas run (default:
    this machine; `cluster/` places them on a Ray cluster's nodes).
    """

    def __init__(
        self,
        store: StateStore,
        settings: Settings,
        *,
        listener: ReplicaListener | None = None,
        on_event: EventListener | None = None,
        environ: Mapping[str, str] | None = None,
        driver_cuda: Callable[[], str | None] = read_driver_cuda,
        clock: Callable[[], float] = time.monotonic,
        launchers: Launchers | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.listener = listener
        self.on_event = on_event
        self.environ = dict(os.environ) if environ is None else dict(environ)
        self._driver_cuda = driver_cuda
        self._flags_checked: set[str] = set()  # services whose engine accepted their flags (checked once)
        self.clock = clock
        self.backoff = Backoff(
            base=settings.restart_backoff,
            cap=settings.restart_backoff_max,
            crash_limit=settings.crash_loop_failures,
            crash_window=settings.crash_loop_window,
        )
        self.replicas: dict[str, Replica] = {}
        self.launchers = launchers or LocalLaunchers()
        self._session: aiohttp.ClientSession | None = None
        self.mark = Mark.of(store.root)  # carried by every process it starts
        self._watchdog = Watchdog(self.mark, settings.stop_timeout, settings.logs_dir / "watchdog.log")

    async def __aenter__(self) -> Supervisor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop_all()
        if self._session:
            await self._session.close()
        await asyncio.to_thread(self._watchdog.close)

    def prepare(self, plan: ServicePlan, index: int = 0) -> Replica:
        """Build a replica's launch (port chosen, command wrapped by its runtime) without starting it."""
        engine = get_engine(plan.service.engine)
        config = replace(plan.config, gpus=plan.gpus_of(index))
        if not config.port:
            config = replace(config, port=free_port(config.host))
        driver = self._driver_cuda() if needs_driver_cuda(plan.service.runtime) else None
        launch = self._build_launch(plan, index, config, driver)
        state = ReplicaState(
            service=plan.name,
            replica=index,
            engine=engine.name,
            models=list(config.served_names),
            status=ReplicaStatus.STARTING,
            port=config.port,
            gpus=list(config.gpus),
            log_path=str(self.settings.logs_dir / f"{plan.name}.{index}.log"),
            command=launch.display(),
            boot_id=current_boot_id(),
            on_demand=plan.service.on_demand,
        )
        previous = self.replicas.get(state.key)
        if previous is not None:  # started again: its history goes on
            state = state.model_copy(update={"events": previous.state.events, "last_error": previous.state.last_error})
        launcher = self.launchers.launcher(plan, index)
        return Replica(plan, index, engine, config, launch, state, launcher, driver_cuda=driver)

    def _build_launch(self, plan: ServicePlan, index: int, config: EngineConfig, driver: str | None) -> Launch:
        name = container_name(self.store.root, plan.name, index)
        return build_launch(plan.service, config, environ=self.environ, driver_cuda=driver, name=name)

    def add_unloaded(self, replica: Replica) -> None:
        """Record an on-demand replica that is not loaded (no process): status lists it, the gateway knows its names."""
        self.replicas[replica.state.key] = replica
        self._update(replica, status=ReplicaStatus.UNLOADED)

    async def start(self, replica: Replica, on_tick: TickListener | None = None) -> float:
        """Start `replica` and block until it is ready; return seconds to ready.

        On failure the replica is stopped, marked failed, and EngineError is raised. Once ready, the
        replica is watched and restarted by its service's restart policy.
        """
        self._watchdog.ensure_started()
        self.replicas[replica.state.key] = replica
        # An on-demand engine that dies is not restarted: it reads as failed, and the next request loads it.
        policy = "never" if replica.plan.service.on_demand else replica.plan.service.restart
        replica.restarts = RestartTracker(policy, self.backoff, self.clock)
        try:
            await self._check_flags_once(replica)
            seconds = await self._launch(replica, on_tick)
        except ServestackError as error:
            self._record_start_failure(replica, error, None, ReplicaStatus.FAILED)
            await replica.launcher.release()
            raise
        except asyncio.CancelledError:
            self._update(replica, status=ReplicaStatus.FAILED, pid=None, last_error="start cancelled")
            raise
        replica.watcher = asyncio.create_task(self._watch(replica))
        return seconds

    async def stop(self, replica: Replica, *, unloaded: str | None = None) -> None:
        """Stop a replica for good (no restart); its whole process group goes.

        `unloaded` says why an on-demand replica is stopped (`idle for 5m`): it then reads as unloaded,
        not stopped, so that the next request loads it again.
        """
        if replica.watcher:
            replica.watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await replica.watcher
            replica.watcher = None
        if replica.state.status in DOWN_STATUSES:
            if replica.process:  # a dead leader may leave workers behind in its group
                await replica.process.stop(self.settings.stop_timeout)
            await replica.launcher.release()
            return
        if replica.process:
            if unloaded is None:  # an unloading replica reads as draining until it is gone (and may load again)
                self._update(replica, status=ReplicaStatus.STOPPING)
            await replica.process.stop(self.settings.stop_timeout)
        await replica.launcher.release()
        if unloaded is not None:
            self._update(replica, history.unloaded(unloaded), status=ReplicaStatus.UNLOADED, pid=None)
        else:
            self._update(replica, history.stopped(), status=ReplicaStatus.STOPPED, pid=None)

    def mark_draining(self, replica: Replica) -> None:
        """The replica takes no new requests while its in-flight ones finish (it is about to stop or sleep)."""
        if replica.state.status is ReplicaStatus.READY:
            self._update(replica, status=ReplicaStatus.DRAINING)

    async def sleep(self, replica: Replica, why: str) -> None:
        """Put a running replica to sleep (its engine's sleep mode): the process stays, its GPU memory is released.

        EngineError when the engine has no sleep mode or refuses; the replica is then left as it was.
        """
        mode = replica.engine.sleep
        if mode is None or replica.process is None:
            raise EngineError(f"{replica.engine.display_name} cannot sleep")
        await call_engine(self._probe_session(), replica.base_url, mode.sleep, timeout=self.settings.stop_timeout)
        self._update(replica, history.unloaded(why, asleep=True), status=ReplicaStatus.SLEEPING)

    async def wake(self, replica: Replica) -> float:
        """Wake a sleeping replica and return the seconds it took; EngineError when it does not wake."""
        mode = replica.engine.sleep
        if mode is None or replica.state.status is not ReplicaStatus.SLEEPING:
            raise EngineError(f"{replica.state.label} is not asleep")
        started = time.monotonic()
        self._update(replica, status=ReplicaStatus.STARTING)
        try:
            await call_engine(self._probe_session(), replica.base_url, mode.wake, timeout=self.settings.ready_timeout)
        except EngineError:
            self._update(replica, status=ReplicaStatus.SLEEPING)
            raise
        seconds = time.monotonic() - started
        self._update(replica, history.woke(seconds), status=ReplicaStatus.READY, ready_at=time.time())
        return seconds

    async def stop_all(self) -> None:
        await asyncio.gather(*(self.stop(r) for r in self.replicas.values()))

    async def _check_flags_once(self, replica: Replica) -> None:
        """Refuse flag values the installed engine does not accept, before anything starts."""
        if replica.plan.name in self._flags_checked:
            return
        await check_flags(
            replica.plan.service,
            replica.launch.argv,
            environ=self.environ,
            driver_cuda=replica.driver_cuda,
            mark=self.mark.env,
        )
        self._flags_checked.add(replica.plan.name)

    async def _launch(self, replica: Replica, on_tick: TickListener | None = None) -> float:
        """Spawn the engine and wait until it is ready; on any failure its group is stopped and the error raised."""
        restart = replica.state.restarts
        self._update(replica, status=ReplicaStatus.STARTING, started_at=time.time(), calibration=None)
        self._move(replica, await replica.launcher.reserve(replica.config))
        log_path = Path(replica.state.log_path)
        replica.process = process = await replica.launcher.spawn(replica.launch, log_path, mark=self.mark.env)
        started = history.started(process.pid, restart, replica.state.node_name)
        self._update(replica, started, pid=process.pid, pgid=process.pgid)
        try:
            seconds = await wait_ready(
                process,
                replica.engine,
                replica.base_url + replica.engine.health_path,
                timeout=self.settings.ready_timeout,
                session=self._probe_session(),
                on_tick=(lambda elapsed: on_tick(replica, elapsed)) if on_tick else None,
            )
        except (EngineError, asyncio.CancelledError):
            await process.stop(self.settings.stop_timeout)
            raise
        record = measure(replica.engine, replica.plan, replica.index, process)  # a few ms: no await, no cancel
        if record is not None:
            self.store.append_calibration(record)
        ready = history.ready(seconds, restart)
        self._update(replica, ready, status=ReplicaStatus.READY, ready_at=time.time(), calibration=record)
        return seconds

    def _move(self, replica: Replica, place: Place) -> None:
        """The replica runs at `place`: a cluster node may give it another address and other GPUs than before."""
        if place.config == replica.config and place.node == replica.state.node:
            return
        replica.config = place.config
        replica.launch = self._build_launch(replica.plan, replica.index, place.config, replica.driver_cuda)
        self._update(
            replica,
            port=place.config.port,
            gpus=list(place.config.gpus),
            node=place.node,
            node_name=place.node_name,
            command=replica.launch.display(),
        )

    def _probe_session(self) -> aiohttp.ClientSession:
        # Made on first use, once the engine is spawned: importing aiohttp costs ~0.2 s.
        if self._session is None:
            import aiohttp

            self._session = aiohttp.ClientSession()
        return self._session

    async def _watch(self, replica: Replica) -> None:
        """Follow a ready replica; when it dies, restart it by its policy until it gives up. A replica whose node
        died is placed again at once (its engine did not fail), unless it is on demand (the next request loads it)."""
        assert replica.restarts is not None
        while True:
            assert replica.process is not None
            code = await replica.process.wait()
            await replica.process.stop(self.settings.stop_timeout)  # workers left in the group
            lost = replica.process.lost
            if lost:
                await replica.launcher.release()
                delay = None if replica.state.on_demand else 0.0
                self._record_loss(replica, lost, delay)
            else:
                delay = replica.restarts.on_exit(code)
                self._record_exit(replica, code, delay)
            if delay is None or not await self._restart_after(replica, delay):
                await replica.launcher.release()
                return

    def _record_loss(self, replica: Replica, why: str, delay: float | None) -> None:
        outcome = "placing it again" if delay is not None else "not restarted (on-demand: the next request loads it)"
        status = ReplicaStatus.RESTARTING if delay is not None else ReplicaStatus.FAILED
        event = history.lost(why, outcome, replica.state.restarts)
        self._update(replica, event, status=status, pid=None, pgid=None, last_error=f"lost: {why}")

    def _record_exit(self, replica: Replica, code: int | None, delay: float | None) -> None:
        """A ready engine ended: say how, and what happens next (restart, give up, or stay down)."""
        assert replica.process is not None and replica.restarts is not None
        error = engine_died(replica.engine, replica.process)
        tail = error.log_tail[-history.EXIT_TAIL_LINES :]
        outcome, status = _outcome(replica.restarts, delay, code, on_demand=replica.state.on_demand)
        event = history.exited(code, outcome, replica.state.restarts, tail)
        # A clean exit that is not restarted is reported, but it is no error.
        last_error = (
            replica.state.last_error if status is ReplicaStatus.EXITED else _error_line(error, replica.restarts)
        )
        self._update(replica, event, status=status, pid=None, last_error=last_error)

    async def _restart_after(self, replica: Replica, delay: float) -> bool:
        """Wait `delay`, then start again (retrying by the policy); False when it gave up."""
        assert replica.restarts is not None
        while True:
            await asyncio.sleep(delay)
            self._update(replica, restarts=replica.state.restarts + 1)
            try:
                await self._launch(replica)
                return True
            except ServestackError as error:
                next_delay = replica.restarts.on_exit(replica.process.returncode if replica.process else None)
                outcome, status = _outcome(replica.restarts, next_delay)
                self._record_start_failure(replica, error, outcome, status)
                if next_delay is None:
                    return False
                delay = next_delay

    def _record_start_failure(
        self, replica: Replica, error: ServestackError, outcome: str | None, status: ReplicaStatus
    ) -> None:
        tail = error.log_tail[-history.EXIT_TAIL_LINES :] if isinstance(error, EngineError) else []
        event = history.start_failed(error.message, outcome, replica.state.restarts, tail)
        self._update(replica, event, status=status, pid=None, last_error=_error_line(error, replica.restarts))

    def _update(self, replica: Replica, event: ReplicaEvent | None = None, **changes: object) -> None:
        state = replica.state.model_copy(update=changes)
        replica.state = state.with_event(event) if event else state
        self.store.write_replica(replica.state)
        if self.listener:
            self.listener(replica)
        if event and self.on_event:
            self.on_event(replica, event)


def _outcome(
    tracker: RestartTracker, delay: float | None, code: int | None = None, *, on_demand: bool = False
) -> tuple[str, ReplicaStatus]:
    """What follows an exit (with `code`, when a ready engine ended), in words, and the status it leaves."""
    if delay is not None:
        return f"restarting in {delay:g}s", ReplicaStatus.RESTARTING
    if tracker.gave_up:
        return f"gave up: {tracker.gave_up}", ReplicaStatus.FAILED
    if on_demand:
        return "not restarted (on-demand: the next request loads it)", ReplicaStatus.FAILED
    return f"not restarted (restart: {tracker.policy})", ReplicaStatus.EXITED if code == 0 else ReplicaStatus.FAILED


def _error_line(error: ServestackError, tracker: RestartTracker | None = None) -> str:
    """`last_error`: why it stays down (a crash loop), what happened, and the engine's last words."""
    tail = error.log_tail[-3:] if isinstance(error, EngineError) else []
    line = f"{error.message}: {' | '.join(tail)}" if tail else error.message
    return f"{tracker.gave_up}; {line}" if tracker and tracker.gave_up else line
