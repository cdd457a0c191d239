"""A real multi-node Ray cluster on this machine, shared by the cluster tests (`pytest -m ray`).

`ray.cluster_utils.Cluster`: a head with 4 GPUs and two workers with 2 each (Ray hands out GPU ids;
there are no GPUs behind them, the simulator needs none), one label resource per node and a declared
GPU type (what `plan` reads when NVML does not answer). Node death is seen within seconds (health
checks every 0.5 s, 3 misses). Traffic stays on 127.0.0.1: Ray must not rewrite the nodes' address,
so the variable that stops it is set before Ray is imported. Starting it takes ~10-45 s and ~0.5 GiB;
it is stopped through `Cluster.shutdown()` (never `ray stop`, which kills every Ray process here).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

HEALTH_CHECKS = {"health_check_period_ms": 500, "health_check_failure_threshold": 3, "health_check_timeout_ms": 500}
RAY_ENVIRONMENT = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # keep 127.0.0.1 as the nodes' address
    "RAY_agent_register_timeout_ms": "120000",  # the dashboard agent starts slowly on 2 busy cores
    "RAY_USAGE_STATS_ENABLED": "0",
}
NODES = {"head": 4, "w1": 2, "w2": 2}
GPU_TYPE = "accelerator_type:H100"


@dataclass
class RayTestCluster:
    address: str
    nodes: dict[str, Any]  # name → ray._private.node.Node
    orphans: list[int] = field(default_factory=list)  # processes a killed raylet had started

    def raylet_pid(self, name: str) -> int:
        return int(self.nodes[name].all_processes["raylet"][0].process.pid)

    def kill_raylet(self, name: str) -> list[int]:
        """What a node's death looks like to the cluster: its raylet gone at once. Returns the pids of the
        processes it had started (its agents and workers), which outlive it for a while."""
        raylet = self.raylet_pid(name)
        children = descendants(raylet)
        os.kill(raylet, signal.SIGKILL)
        self.orphans += children
        return children

    def reap_orphans(self) -> None:
        """Ray's own processes of a killed node (agents, idle workers) that did not end by themselves."""
        for pid in self.orphans:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (children, their children, …), from /proc."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                parents[int(entry)] = int(stat.rpartition(")")[2].split()[1])
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[RayTestCluster]:
    if importlib.util.find_spec("ray") is None:
        pytest.skip("Ray is not installed: pip install 'servestack[ray]'")
    with pytest.MonkeyPatch.context() as patch:
        for name, value in RAY_ENVIRONMENT.items():
            patch.setenv(name, value)  # also for the servestack processes the tests start
        from ray.cluster_utils import Cluster

        cluster = Cluster(
            initialize_head=True,
            head_node_args={
                "num_gpus": NODES["head"],
                "num_cpus": 2,
                "resources": {"head": 1, GPU_TYPE: 1},
                "node_ip_address": "127.0.0.1",
                "_system_config": HEALTH_CHECKS,
            },
        )
        nodes = {"head": cluster.head_node}
        try:
            for name in ("w1", "w2"):
                nodes[name] = cluster.add_node(
                    num_gpus=NODES[name], num_cpus=2, resources={name: 1, GPU_TYPE: 1}, node_ip_address="127.0.0.1"
                )
            cluster.wait_for_nodes()
            test_cluster = RayTestCluster(cluster.address, nodes)
            yield test_cluster
            test_cluster.reap_orphans()
        finally:
            cluster.shutdown()
