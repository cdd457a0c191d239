"""A real multi-node Ray cluster on this machine, for `pytest -m ray` (tests/cluster/) and bench/cluster.py.

`ray.cluster_utils.Cluster`: by default a head with 4 GPUs and two workers with 2 each (Ray hands out
GPU ids; there are no GPUs behind them, the simulator needs none), one label resource per node and,
on nodes with GPUs, a declared GPU type (what `plan` reads when NVML does not answer). Node death is
seen within seconds: health checks every 0.5 s, 3 misses, set as docs/cluster.md tells users to,
through `RAY_health_check_*` variables in the environment of the cluster's processes
(`health_checks=None` keeps Ray's defaults). Traffic stays on 127.0.0.1: Ray must not rewrite the
nodes' address, so the variable that stops it is set (for this process and the servestack processes
it starts) before Ray is imported. Starting it takes ~10-45 s and ~0.5 GiB; it is stopped through
`Cluster.shutdown()` (never `ray stop`, which kills every Ray process on the machine).

A node dies in one of three ways here: its raylet SIGKILLed (the node is dead to the cluster; what it
started lives on for a while, as Ray leaves it), all of it SIGKILLed at once (raylet, agents, workers,
engines: a crashed machine, whose connections the kernel still resets), or all of it SIGSTOPped (a
machine that lost power or network: connections stay open and nothing answers).
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

from harness.procs import tree_pids

HEALTH_CHECKS = {"health_check_period_ms": 500, "health_check_failure_threshold": 3, "health_check_timeout_ms": 500}
RAY_ENVIRONMENT = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # keep 127.0.0.1 as the nodes' address
    "RAY_agent_register_timeout_ms": "120000",  # the dashboard agent starts slowly on 2 busy cores
    "RAY_USAGE_STATS_ENABLED": "0",
}
NODES = {"head": 4, "w1": 2, "w2": 2}  # name → GPUs
GPU_TYPE = "accelerator_type:H100"
DEATHS = ("raylet", "node", "freeze")


@dataclass
class LocalRayCluster:
    cluster: Any  # ray.cluster_utils.Cluster
    nodes: dict[str, Any]  # name → ray._private.node.Node
    orphans: list[int] = field(default_factory=list)  # processes of killed nodes, to reap at the end

    @property
    def address(self) -> str:
        return str(self.cluster.address)

    def add_node(self, name: str, gpus: int) -> None:
        """A worker node with `gpus` GPUs and the label resource `name` (again, after its namesake died)."""
        resources = {name: 1, GPU_TYPE: 1} if gpus else {name: 1}
        self.nodes[name] = self.cluster.add_node(
            num_gpus=gpus, num_cpus=2, resources=resources, node_ip_address="127.0.0.1"
        )
        self.cluster.wait_for_nodes()

    def raylet_pid(self, name: str) -> int:
        return int(self.nodes[name].all_processes["raylet"][0].process.pid)

    def kill(self, name: str, death: str) -> list[int]:
        """Node `name` dies the way `death` (one of DEATHS) says; the pids of every process it had."""
        raylet = self.raylet_pid(name)
        processes = tree_pids(raylet)
        self.orphans += processes
        if death == "raylet":
            os.kill(raylet, signal.SIGKILL)
        else:
            sig = signal.SIGKILL if death == "node" else signal.SIGSTOP
            for pid in processes:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
        return processes

    def replace(self, name: str, gpus: int) -> None:
        """A fresh node in place of the dead node `name` (its leftovers reaped first)."""
        self.reap_orphans()
        with contextlib.suppress(Exception):  # its processes are gone already: only the bookkeeping is left
            self.cluster.remove_node(self.nodes[name], allow_graceful=False)
        self.add_node(name, gpus)

    def reap_orphans(self) -> None:
        """The processes of killed nodes that did not end by themselves (frozen ones included)."""
        for pid in self.orphans:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.orphans.clear()


@contextlib.contextmanager
def local_ray_cluster(
    nodes: Mapping[str, int] = NODES, health_checks: Mapping[str, int] | None = HEALTH_CHECKS
) -> Iterator[LocalRayCluster]:
    """The cluster (the first of `nodes` is the head), running until the block ends."""
    checks = {f"RAY_{name}": str(value) for name, value in (health_checks or {}).items()}
    with mock.patch.dict(os.environ, {**RAY_ENVIRONMENT, **checks}):
        from ray.cluster_utils import Cluster

        (head, head_gpus), *workers = nodes.items()
        cluster = Cluster(
            initialize_head=True,
            head_node_args={
                "num_gpus": head_gpus,
                "num_cpus": 2,
                "resources": {head: 1, GPU_TYPE: 1},
                "node_ip_address": "127.0.0.1",
            },
        )
        local = LocalRayCluster(cluster, {head: cluster.head_node})
        try:
            for name, gpus in workers:
                local.add_node(name, gpus)
            yield local
        finally:
            local.reap_orphans()
            cluster.shutdown()
