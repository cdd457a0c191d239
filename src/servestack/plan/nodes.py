"""Placement on a cluster's nodes: the nodes a service may use (`nodes:`), its pinned GPUs on a node, and
free GPUs taken in blocks that each stay on one node — tensor parallelism stays inside one machine
(one NVLink domain); servestack does not spread one engine over nodes.

On one machine every GPU is on the same (no) node, so these rules reduce to taking GPUs in order. Pure.
"""

from __future__ import annotations

from collections.abc import Sequence

from servestack.gpus import Gpu, Inventory
from servestack.plan.model import Finding, Severity
from servestack.stack import Service

NodeIds = tuple[str, ...]  # the ids of the nodes a service may run on; empty: any node (or this machine)


def allowed_nodes(name: str, service: Service, inventory: Inventory) -> tuple[NodeIds, Finding | None]:
    """The nodes `service` may run on, and an error when its `nodes:` names none, or there is no cluster."""
    if not service.nodes:
        return (), None
    key = ("services", name, "nodes")
    if not inventory.is_cluster:
        return (), Finding(
            Severity.ERROR,
            "`nodes` names cluster nodes, and this plan is for one machine",
            service=name,
            reason=f"the inventory is {inventory.describe()}",
            fix="add `cluster: {kind: ray, address: ...}` to the stack, or remove `nodes`",
            code="nodes-without-cluster",
            key=key,
        )
    unknown = [s for s in service.nodes if not any(node.matches(s) for node in inventory.nodes)]
    if unknown:
        listing = "; ".join(
            f"{n.name} (id {n.id}, {n.address}, labels: {', '.join(n.labels) or '-'})" for n in inventory.nodes
        )
        return (), Finding(
            Severity.ERROR,
            f"no live node of the cluster matches {unknown[0]!r}",
            service=name,
            reason=f"its live nodes: {listing}",
            fix="name a node by its id, a custom resource it has, a label KEY=VALUE, or its address",
            code="node-unknown",
            key=key,
        )
    return matching_nodes(service.nodes, inventory), None


def matching_nodes(selectors: Sequence[str], inventory: Inventory) -> NodeIds:
    """The nodes any of `selectors` names, in the inventory's order."""
    return tuple(node.id for node in inventory.nodes if any(node.matches(s) for s in selectors))


def on_nodes(gpus: Sequence[Gpu], nodes: NodeIds) -> list[Gpu]:
    """The GPUs of `gpus` on one of `nodes` (none given: all)."""
    return [gpu for gpu in gpus if not nodes or gpu.node in nodes]


def pinned_gpus(service: Service, nodes: NodeIds, inventory: Inventory) -> tuple[tuple[Gpu, ...], list[int]]:
    """The GPUs `service.gpus` pins, and the indices that exist nowhere they may be.

    On a cluster the indices are a node's own: the first node (of `nodes`, or of all) that has them all.
    """
    wanted = list(dict.fromkeys(service.gpus or ()))
    if not inventory.is_cluster:
        missing = [i for i in wanted if inventory.gpu(i) is None]
        return tuple(g for i in wanted if (g := inventory.gpu(i)) is not None), missing
    for node in inventory.nodes:
        if nodes and node.id not in nodes:
            continue
        here = {gpu.local_index: gpu for gpu in inventory.gpus_on(node.id)}
        if all(i in here for i in wanted):
            return tuple(here[i] for i in wanted), []
    candidates = [g for n in inventory.nodes if not nodes or n.id in nodes for g in inventory.gpus_on(n.id)]
    return (), [i for i in wanted if all(g.local_index != i for g in candidates)] or wanted


def take_blocks(free: Sequence[Gpu], size: int, count: int) -> list[tuple[Gpu, ...]]:
    """Up to `count` blocks of `size` GPUs, each on one node: first fit over the nodes in order."""
    left = list(free)
    blocks: list[tuple[Gpu, ...]] = []
    for _ in range(count):
        block = next((group[:size] for group in by_node(left) if len(group) >= size), None)
        if block is None:
            break
        blocks.append(block)
        left = [gpu for gpu in left if gpu not in block]
    return blocks


def largest_block(gpus: Sequence[Gpu]) -> tuple[Gpu, ...]:
    """The most GPUs of `gpus` on one node (the first such node on a tie)."""
    return max(by_node(gpus), key=len, default=())


def by_node(gpus: Sequence[Gpu]) -> list[tuple[Gpu, ...]]:
    """`gpus` grouped by node, in order of first appearance."""
    groups: dict[str | None, list[Gpu]] = {}
    for gpu in gpus:
        groups.setdefault(gpu.node, []).append(gpu)
    return [tuple(group) for group in groups.values()]
