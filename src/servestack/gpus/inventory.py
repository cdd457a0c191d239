"""`Gpu`, `Node` and `Inventory`: the accelerators a plan is made for, read from NVML, parsed from a spec,
or gathered from a cluster's nodes (`cluster/`).

On a cluster every GPU keeps a number unique in the inventory (`index`: what plans, shares and
findings key on) beside its index on its node (`node_index`: CUDA_VISIBLE_DEVICES there).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

GIB = 2**30


@dataclass(frozen=True)
class Gpu:
    """One GPU. `free_bytes` is None when planning for a machine we are not on (assume all free)."""

    index: int
    name: str
    total_bytes: int
    free_bytes: int | None = None
    node: str | None = None  # the id of the cluster node it is on; None: this machine
    node_index: int | None = None  # its index on that node; None: `index`

    @property
    def available_bytes(self) -> int:
        """What an engine starting now could use: free memory when known, else the total."""
        return self.total_bytes if self.free_bytes is None else self.free_bytes

    @property
    def local_index(self) -> int:
        """Its index where it is (CUDA_VISIBLE_DEVICES on its machine)."""
        return self.index if self.node_index is None else self.node_index

    @property
    def label(self) -> str:
        """`GPU 2`, or on a cluster `GPU 0 of node 3f2a9c1e`."""
        return f"GPU {self.local_index} of node {short_id(self.node)}" if self.node else f"GPU {self.index}"

    def describe(self) -> str:
        return f"{self.label} ({self.name}, {self.total_bytes / GIB:.1f} GiB)"


def short_id(node_id: str) -> str:
    return node_id[:8]


@dataclass(frozen=True)
class Node:
    """One node of a cluster: its id, its address, and the labels a service's `nodes:` may name it by
    (its custom resources, and its node labels as KEY=VALUE)."""

    id: str
    address: str
    labels: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """How servestack shows it: its first label, else the start of its id."""
        return self.labels[0] if self.labels else short_id(self.id)

    def matches(self, selector: str) -> bool:
        """Whether `selector` (from `nodes:`) names this node: its id (or a unique-looking start of it, 6+
        characters), one of its labels, or its address."""
        return (
            selector in (self.id, self.address)
            or selector in self.labels
            or (len(selector) >= 6 and self.id.startswith(selector))
        )


@dataclass(frozen=True)
class Inventory:
    """The GPUs of one machine (none: a CPU-only machine), and where that list came from."""

    gpus: tuple[Gpu, ...] = ()
    source: str = "cpu"  # "nvml", "spec 4xH200", "cpu", "ray cluster at auto"
    driver_version: str | None = None
    cuda_driver_version: str | None = None  # the highest CUDA version the driver supports ("12.4")
    nodes: tuple[Node, ...] = ()  # a cluster's live nodes, in the order placement tries them; none: one machine

    @classmethod
    def cpu(cls) -> Inventory:
        return cls()

    @property
    def is_cpu(self) -> bool:
        return not self.gpus

    @property
    def is_cluster(self) -> bool:
        return bool(self.nodes)

    @property
    def indices(self) -> list[int]:
        return [gpu.index for gpu in self.gpus]

    def gpu(self, index: int) -> Gpu | None:
        return next((gpu for gpu in self.gpus if gpu.index == index), None)

    def node(self, node_id: str | None) -> Node | None:
        return next((node for node in self.nodes if node.id == node_id), None)

    def gpus_on(self, node_id: str | None) -> tuple[Gpu, ...]:
        return tuple(gpu for gpu in self.gpus if gpu.node == node_id)

    def node_name(self, node_id: str | None) -> str:
        node = self.node(node_id)
        return node.name if node else short_id(node_id or "")

    def describe(self) -> str:
        cuda = f", driver CUDA {self.cuda_driver_version}" if self.cuda_driver_version else ""
        if self.is_cluster:
            nodes = "; ".join(f"{node.name}: {_counts(self.gpus_on(node.id))}" for node in self.nodes)
            return f"{len(self.nodes)} nodes — {nodes} ({self.source}{cuda})"
        if self.is_cpu:
            return "no GPU (CPU only)"
        return f"{_counts(self.gpus)} ({self.source}{cuda})"


def cluster_inventory(
    nodes: Sequence[tuple[Node, Sequence[Gpu]]], source: str, cuda_driver_version: str | None = None
) -> Inventory:
    """One inventory of a cluster's nodes: each node's GPUs (numbered on the node) numbered across the cluster."""
    gpus: list[Gpu] = []
    for node, own in nodes:
        gpus += [replace(gpu, index=len(gpus) + i, node=node.id, node_index=gpu.index) for i, gpu in enumerate(own)]
    return Inventory(tuple(gpus), source, cuda_driver_version=cuda_driver_version, nodes=tuple(n for n, _ in nodes))


def _counts(gpus: tuple[Gpu, ...]) -> str:
    """`4× H100-80GB`, `2× A10G, 1× L4`; `no GPU`."""
    names = sorted({gpu.name for gpu in gpus})
    return ", ".join(f"{sum(g.name == n for g in gpus)}× {n}" for n in names) or "no GPU"
