"""The supervisor's launchers for a Ray cluster: each replica placed on a node by a placement group, its
engine started there by a launcher actor (`node.py`), its output copied to this machine's log.

A replica of N GPUs gets a `STRICT_PACK` placement group of one bundle `{"GPU": N}` and its launcher
actor takes `num_gpus=N` inside it (Ray schedules an actor into a single bundle: N bundles of one GPU
could not hold it), so its GPUs are on one node; a replica without GPUs gets `{"CPU": 1}`. The first
placement is pinned to the node the plan chose (a `ray.io/node-id` label selector); after the node is
lost, the replica goes wherever its `nodes:` allow and Ray finds room. CUDA_VISIBLE_DEVICES is the GPU
ids Ray gave the actor (`ray.get_gpu_ids()`), or the node's GPUs the service pins with `gpus:`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from servestack.cluster.connection import said
from servestack.engines import EngineConfig
from servestack.errors import ClusterError
from servestack.supervisor.launcher import Place
from servestack.supervisor.process import NO_MARK, START_READ_LIMIT, read_start, write_start_header

if TYPE_CHECKING:
    from servestack.cluster.connection import RayCluster
    from servestack.plan import ServicePlan
    from servestack.runtimes import Launch

NODE_ID_LABEL = "ray.io/node-id"
LOG_CHUNK = 256 * 1024  # bytes of engine output fetched per call
LOG_POLL_SECONDS = 0.25  # how often a quiet engine's output is fetched


class RayLaunchers:
    """Every replica on the cluster (the supervisor's `Launchers`)."""

    def __init__(self, cluster: RayCluster, stop_timeout: float) -> None:
        self.cluster = cluster
        self.stop_timeout = stop_timeout

    def launcher(self, plan: ServicePlan, index: int) -> RayLauncher:
        place = plan.places[index] if plan.places else None
        return RayLauncher(
            self.cluster,
            f"{plan.name}.{index}",
            gpus=len(plan.gpus_of(index)),
            planned=place.node if place else None,
            nodes=plan.nodes,
            pinned=plan.gpus_of(index) if plan.service.gpus else (),
            port=plan.service.port,
            stop_timeout=self.stop_timeout,
        )


class RayLauncher:
    """One replica's place on the cluster: its placement group and launcher actor, while they hold."""

    def __init__(
        self,
        cluster: RayCluster,
        key: str,
        *,
        gpus: int,
        planned: str | None,
        nodes: tuple[str, ...],
        pinned: tuple[int, ...],
        port: int | None,
        stop_timeout: float,
    ) -> None:
        self.cluster = cluster
        self.key = key
        self.gpus = gpus
        self.planned = planned  # the node of the first placement
        self.nodes = nodes
        self.pinned = pinned
        self.port = port
        self.stop_timeout = stop_timeout
        self._group: Any = None
        self._actor: Any = None
        self._place: Place | None = None

    async def reserve(self, config: EngineConfig) -> Place:
        if self._place is not None:
            return self._place
        self._group = await self._placement_group()
        self._actor = self.cluster.launcher_actor(self._group, self.gpus, self.stop_timeout)
        try:
            where = await self._actor.where.remote(self.port)
        except self.cluster.errors as error:
            await self.release()
            raise ClusterError(
                f"the launcher of {self.key} did not start on its node: {said(error)}",
                fix="install the same servestack (and engines) on every node, in the Python environment Ray runs",
            ) from None
        node = where["node"]
        config = replace(config, host=where["address"], port=where["port"], gpus=self.pinned or tuple(where["gpus"]))
        self._place = Place(config, node=node, node_name=self.cluster.node_name(node))
        self.planned = None  # placed once as planned; from now on wherever there is room
        return self._place

    async def spawn(self, launch: Launch, log_path: Path, *, mark: Mapping[str, str] = NO_MARK) -> RemoteEngine:
        """Start the engine through the launcher actor (which marks it as its own: `mark` is this machine's)."""
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            offset = write_start_header(log, launch)
        try:
            pid = await self._actor.spawn.remote(launch, self.key)
        except self.cluster.errors as error:
            raise ClusterError(f"{self.key} could not be started on its node: {said(error)}") from None
        assert self._place is not None
        return RemoteEngine(self.cluster, self._actor, pid, log_path, offset, self._place)

    async def release(self) -> None:
        actor, group = self._actor, self._group
        self._actor = self._group = self._place = None
        if actor is not None:
            await self.cluster.end_actor(actor, self.stop_timeout)
        if group is not None:
            self.cluster.remove_group(group)

    async def _placement_group(self) -> Any:
        """A placement group for this replica, ready; ClusterError when no node has room in time."""
        nodes = (self.planned,) if self.planned and self.cluster.alive(self.planned) else self.nodes
        bundle = {"GPU": float(self.gpus)} if self.gpus else {"CPU": 1.0}
        selector = {NODE_ID_LABEL: f"in({','.join(nodes)})"} if nodes else {}
        group = self.cluster.placement_group(bundle, selector)
        timeout = self.cluster.config.placement_timeout
        try:
            await asyncio.wait_for(group.ready(), timeout)
        except TimeoutError:
            self.cluster.remove_group(group)
            what = f"{self.gpus} GPU(s) on one node" if self.gpus else "a CPU"
            where = f" among nodes {', '.join(self.cluster.node_name(n) for n in nodes)}" if nodes else ""
            raise ClusterError(
                f"no room on the cluster for {self.key}: {what}{where} did not come free within {timeout:g}s",
                fix="free GPUs on the cluster or add a node; cluster.placement_timeout sets how long a replica waits",
            ) from None
        return group


class RemoteEngine:
    """An engine on a cluster node (the supervisor's `EngineHandle`): followed through its launcher actor.

    Its output is copied into `log_path` on this machine as it comes. When the actor dies (its node
    died, or it was killed) the engine counts as lost: `lost` says why, and the engine itself is gone
    with the actor (node.py).
    """

    def __init__(self, cluster: RayCluster, actor: Any, pid: int, log_path: Path, offset: int, place: Place) -> None:
        self.cluster = cluster
        self.pid = pid
        self.pgid: int | None = None  # on another node: nothing here may signal it
        self.log_path = log_path
        self.log_offset = offset
        self.node = place.node
        self._actor = actor
        self._copied = 0  # bytes of output copied so far
        self._returncode: int | None = None
        self._lost: str | None = None
        self._done = asyncio.Event()
        self._follower = asyncio.create_task(self._follow(), name=f"follow {pid}")

    @property
    def returncode(self) -> int | None:
        return self._returncode

    @property
    def lost(self) -> str | None:
        return self._lost

    async def wait(self) -> int | None:
        await self._done.wait()
        return self._returncode

    async def stop(self, timeout: float) -> int | None:
        if not self._done.is_set():
            with contextlib.suppress(*self.cluster.actor_errors):
                await self._actor.stop.remote(timeout)
        return await self.wait()

    def read_log(self, limit: int = START_READ_LIMIT) -> str:
        return read_start(self.log_path, self.log_offset, limit)

    async def _follow(self) -> None:
        copier = asyncio.create_task(self._copy_output())
        try:
            while self._returncode is None:
                try:
                    self._returncode = await self._actor.wait.remote()
                except self.cluster.unavailable:  # unreachable for now: back soon, or declared dead
                    await asyncio.sleep(LOG_POLL_SECONDS)
        except self.cluster.actor_errors as error:
            self._lost = self.cluster.why_lost(self.node, error)
        finally:
            copier.cancel()
            with contextlib.suppress(asyncio.CancelledError, *self.cluster.actor_errors):
                await copier
            if self._lost is None:
                with contextlib.suppress(*self.cluster.actor_errors):
                    while await self._copy_once():  # the engine's last words
                        pass
            self._done.set()

    async def _copy_output(self) -> None:
        while True:
            if not await self._copy_once():
                await asyncio.sleep(LOG_POLL_SECONDS)

    async def _copy_once(self) -> int:
        """Append what the engine wrote since the last copy to the local log; the number of bytes."""
        chunk: bytes = await self._actor.read_output.remote(self._copied, LOG_CHUNK)
        if chunk:
            with self.log_path.open("ab") as log:
                log.write(chunk)
            self._copied += len(chunk)
        return len(chunk)
