"""The driver's connection to a Ray cluster: the one place (with the actor in node.py) that calls Ray.

`connect` joins the cluster the stack names (`cluster:`); `inventory` reads its live nodes for the
planner; the rest is what the launchers (launcher.py) need: placement groups, launcher actors, and
whether a node is alive when an actor on it died.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from typing import Any

from servestack.cluster.inventory import gpu_count, gpus_of, node_of, placement_order
from servestack.cluster.node import NodeLauncher, probe_gpus
from servestack.errors import ClusterError
from servestack.gpus import Inventory, cluster_inventory
from servestack.gpus.inventory import short_id
from servestack.stack import ClusterConfig

PROBE_TIMEOUT = 60.0  # seconds for every node's GPU probe together (a task needs a worker started there)
CLOSE_TIMEOUT = 5.0  # seconds on top of the stop timeout for a launcher actor to stop its engine


class RayCluster:
    def __init__(self, config: ClusterConfig, ray: Any) -> None:
        self.config = config
        self._ray = ray
        self._names: dict[str, str] = {}
        self._remote_launcher: Any = None
        from ray.exceptions import ActorUnavailableError, RayActorError, RayError

        self.errors: tuple[type[Exception], ...] = (RayError,)
        self.actor_errors: tuple[type[Exception], ...] = (RayActorError,)
        self.unavailable: tuple[type[Exception], ...] = (ActorUnavailableError,)

    @classmethod
    def connect(cls, config: ClusterConfig) -> RayCluster:
        """Join the cluster as a driver in `config.namespace` (once per process: `up` plans, then runs, on one
        connection); ClusterError when Ray is missing or the cluster cannot be reached."""
        try:
            import ray
        except ImportError:
            raise ClusterError(
                "the stack places its engines on a Ray cluster (`cluster:`), and Ray is not installed",
                fix="pip install 'servestack[ray]'",
            ) from None
        if ray.is_initialized():
            return cls(config, ray)
        try:
            ray.init(
                address=config.address,
                namespace=config.namespace,
                log_to_driver=False,  # engine output comes back through the launchers, into the engines' logs
                logging_level=logging.WARNING,
            )
        except Exception as exc:  # Ray fails to join in many ways (ConnectionError, RuntimeError, its own)
            raise ClusterError(
                f"cannot join the Ray cluster at {config.address}: {exc}",
                fix="start it (docs/cluster.md), or correct cluster.address in the stack",
            ) from None
        return cls(config, ray)

    def close(self) -> None:
        self._ray.shutdown()

    def inventory(self) -> Inventory:
        """The live nodes and their GPUs (NVML on each node, else its declared GPU type)."""
        infos = placement_order(self._ray.nodes())
        probed = self._probe(infos)
        entries = [(node_of(info), gpus_of(info, probed.get(info["NodeID"]))) for info in infos]
        self._names = {node.id: node.name for node, _ in entries}
        versions = sorted(p["cuda"] for p in probed.values() if p and p.get("cuda"))
        return cluster_inventory(entries, f"Ray cluster at {self.config.address}", versions[0] if versions else None)

    def node_name(self, node_id: str) -> str:
        if node_id not in self._names:
            found = [node_of(info) for info in self._ray.nodes() if info["NodeID"] == node_id]
            self._names[node_id] = found[0].name if found else short_id(node_id)
        return self._names[node_id]

    def alive(self, node_id: str) -> bool:
        return any(info["NodeID"] == node_id and info.get("Alive") for info in self._ray.nodes())

    def why_lost(self, node_id: str | None, error: Exception) -> str:
        """Why an engine whose launcher actor died is gone: its node died, or the actor alone."""
        if node_id is not None and not self.alive(node_id):
            return f"node {self.node_name(node_id)} ({short_id(node_id)}) died"
        return f"its launcher actor died ({said(error)})"

    def placement_group(self, bundle: Mapping[str, float], selector: Mapping[str, str]) -> Any:
        from ray.util.placement_group import placement_group

        return placement_group([dict(bundle)], strategy="STRICT_PACK", bundle_label_selector=[dict(selector)])

    def remove_group(self, group: Any) -> None:
        from ray.util.placement_group import remove_placement_group

        with contextlib.suppress(Exception):  # gone with its node already
            remove_placement_group(group)

    def launcher_actor(self, group: Any, gpus: int, stop_timeout: float) -> Any:
        """A launcher actor (node.py) in `group`, holding `gpus` GPUs (none: a CPU)."""
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        if self._remote_launcher is None:
            self._remote_launcher = self._ray.remote(NodeLauncher)
        return self._remote_launcher.options(
            num_gpus=gpus,
            num_cpus=0 if gpus else 1,
            max_restarts=0,  # a dead launcher is replaced by the supervisor, on a node with room
            scheduling_strategy=PlacementGroupSchedulingStrategy(group),
        ).remote(self.config.namespace, stop_timeout)

    async def end_actor(self, actor: Any, stop_timeout: float) -> None:
        """Ask the launcher to stop its engine and clean up, then kill it."""
        import asyncio

        with contextlib.suppress(TimeoutError, *self.actor_errors):
            await asyncio.wait_for(actor.close.remote(), stop_timeout + CLOSE_TIMEOUT)
        with contextlib.suppress(*self.actor_errors):
            self._ray.kill(actor)

    def _probe(self, infos: list[Mapping[str, Any]]) -> dict[str, dict[str, Any] | None]:
        """NVML's view of every node with GPUs; a node that does not answer in time is left out."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        task = self._ray.remote(num_cpus=0)(probe_gpus)
        refs = {
            task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(info["NodeID"], soft=False)).remote(): info[
                "NodeID"
            ]
            for info in infos
            if gpu_count(info)
        }
        ready, _ = self._ray.wait(list(refs), num_returns=len(refs), timeout=PROBE_TIMEOUT)
        found: dict[str, dict[str, Any] | None] = {}
        for ref in ready:
            with contextlib.suppress(Exception):  # a node whose probe failed falls back to its declared type
                found[refs[ref]] = self._ray.get(ref)
        return found


def said(error: Exception) -> str:
    """The gist of a Ray error: its last non-empty line (Ray puts the cause under a traceback)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__
