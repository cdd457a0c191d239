"""A cluster's inventory from what Ray says of its nodes: pure functions over `ray.nodes()` entries.

A node's GPU count is its `GPU` resource (what Ray will hand out). Their names and memory come from
NVML on the node (`node.probe_gpus`, run there as a task); without an answer from NVML, from the
GPU type the node declares (`accelerator_type:H100`, which Ray sets itself on NVIDIA nodes and
`ray start --resources` can declare) looked up in servestack's table of GPU models.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from servestack.errors import InventoryError
from servestack.gpus import Gpu, Node, find_gpu_model
from servestack.gpus.table import MIB

STANDARD_RESOURCES = frozenset({"CPU", "GPU", "memory", "object_store_memory"})
# Resources that are not labels: node addresses, the GPU type, and what placement groups add while they exist.
NOT_LABELS = ("node:", "accelerator_type:")
HEAD_RESOURCE = "node:__internal_head__"
ACCELERATOR = "accelerator_type:"


def node_of(info: Mapping[str, Any]) -> Node:
    """A node as servestack names it: its id, address, custom resources and (non-Ray) labels."""
    resources = info.get("Resources", {})
    custom = sorted(
        name
        for name in resources
        if name not in STANDARD_RESOURCES and not name.startswith(NOT_LABELS) and "_group_" not in name
    )
    labels = sorted(f"{k}={v}" for k, v in info.get("Labels", {}).items() if not k.startswith("ray.io/"))
    return Node(id=info["NodeID"], address=info.get("NodeManagerAddress", ""), labels=(*custom, *labels))


def placement_order(infos: list[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Live nodes in the order placement tries them: the head first, then by name."""
    alive = [info for info in infos if info.get("Alive")]
    return sorted(alive, key=lambda info: (HEAD_RESOURCE not in info.get("Resources", {}), node_of(info).name))


def gpu_count(info: Mapping[str, Any]) -> int:
    return int(info.get("Resources", {}).get("GPU", 0))


def gpus_of(info: Mapping[str, Any], probed: Mapping[str, Any] | None) -> tuple[Gpu, ...]:
    """The node's GPUs, numbered on the node: NVML's (`probed`) when it saw them all, else by its declared type."""
    count = gpu_count(info)
    seen = probed["gpus"] if probed else []
    if len(seen) >= count:
        return tuple(Gpu(i, name, total, free) for i, (name, total, free) in enumerate(seen[:count]))
    declared = [name.removeprefix(ACCELERATOR) for name in info.get("Resources", {}) if name.startswith(ACCELERATOR)]
    model = find_gpu_model(declared[0]) if declared else None
    if model is None:
        node = node_of(info)
        said = (
            f"declares accelerator_type:{declared[0]}, which servestack does not know"
            if declared
            else ("declares no accelerator_type")
        )
        raise InventoryError(
            f"node {node.name} ({node.id}) has {count} GPU(s) Ray can give out, but NVML does not answer there and "
            f"the node {said}: their memory is unknown",
            fix="install the NVIDIA driver there, or start the node with "
            "`ray start --resources '{\"accelerator_type:H100\": 1}'` naming its GPU model (see docs/cluster.md)",
        )
    return tuple(Gpu(i, model.name, model.total_mib * MIB) for i in range(count))
