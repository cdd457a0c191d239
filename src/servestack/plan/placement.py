"""Placement: which GPUs a service runs on and at which TP size.

Pinned GPUs are honoured (and must exist); SGLang, vLLM and mistral.rs run one rank per GPU, so TP
equals the number of GPUs. A service without `gpus` gets free GPUs (not pinned by anyone, not taken
by an earlier service): as many as its `tp`, or the smallest valid TP that fits. llama.cpp without
`gpus` runs on the CPU: the llama-cpp-python wheel from PyPI is a CPU build. The simulator, which needs
no GPU, holds `tp` free GPUs per replica when it is given `tp` and no `gpus`: a stand-in for a
tensor-parallel engine. On a cluster each replica's GPUs are on one node, of the nodes its `nodes:`
allows (nodes.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from servestack.engines import EngineFlags, Parallelism, get_engine
from servestack.gpus import Gpu, Inventory
from servestack.plan.fit import FitRequest
from servestack.plan.model import Decision, Finding, Severity, setting_key
from servestack.plan.nodes import NodeIds, allowed_nodes, largest_block, on_nodes, pinned_gpus, take_blocks
from servestack.plan.recommend import explore_tp, smallest_fitting_tp, valid_sizes
from servestack.stack import Service


@dataclass(frozen=True)
class Placement:
    gpus: tuple[Gpu, ...]  # the first (or only) replica's GPUs: what the fit is checked on
    tp: int
    findings: tuple[Finding, ...] = ()
    decisions: tuple[Decision, ...] = ()
    replica_blocks: tuple[tuple[Gpu, ...], ...] = ()  # one block per replica, when replicas get GPUs of their own
    nodes: NodeIds = ()  # the cluster nodes it may run on (`nodes:`); empty: any

    @property
    def failed(self) -> bool:
        return any(f.severity is Severity.ERROR for f in self.findings)


def place_service(
    name: str, service: Service, request: FitRequest | None, inventory: Inventory, free: Sequence[Gpu]
) -> Placement:
    """Where `service` runs; `request` is None when the model's facts are unknown."""
    engine = get_engine(service.engine)
    nodes, problem = allowed_nodes(name, service, inventory)
    if problem is not None:
        return Placement((), service.tp or 1, (problem,))
    free = on_nodes(free, nodes)
    if service.gpus:
        placement = _place_pinned(name, service, engine.flags, engine.parallelism, inventory, nodes)
    elif engine.parallelism is Parallelism.NONE and service.tp and not inventory.is_cpu:
        placement = _place_free(name, service, engine.flags, None, inventory, free)  # a stand-in for TP
    elif engine.parallelism is not Parallelism.TENSOR:
        placement = Placement(gpus=(), tp=service.tp or 1)
    elif inventory.is_cpu:
        placement = Placement((), service.tp or 1, (_no_gpu(name, service, inventory),))
    else:
        placement = _place_free(name, service, engine.flags, request, inventory, free)
    return replace(placement, nodes=nodes)


def place_pinned(name: str, service: Service, inventory: Inventory, nodes: NodeIds = ()) -> Placement:
    """On the GPUs the service pins (none: the CPU), which must exist, at the TP the stack gives."""
    tp = service.tp or 1
    gpus, missing = pinned_gpus(service, nodes, inventory)
    if missing:
        return Placement((), tp, (_missing_gpus(name, missing, inventory),))
    return Placement(gpus, tp)


def _place_pinned(
    name: str, service: Service, flags: EngineFlags, parallelism: Parallelism, inventory: Inventory, nodes: NodeIds
) -> Placement:
    placement = place_pinned(name, service, inventory, nodes)
    if placement.failed or parallelism is not Parallelism.TENSOR:
        return placement
    gpus = placement.gpus
    if service.replicas > 1:
        return _place_pinned_replicas(name, service, flags, gpus)
    tp = service.tp or len(gpus)
    if tp != len(gpus):
        mismatch = Finding(
            Severity.ERROR,
            f"tp {tp} with {len(gpus)} pinned GPUs ({_indices(gpus)})",
            service=name,
            reason=f"{service.engine} runs one tensor-parallel rank per GPU, so TP must equal the number of GPUs",
            fix=f"set `tp: {len(gpus)}`, or pin {tp} GPUs",
            code="tp-gpu-mismatch",
            key=("services", name, "tp"),
        )
        return Placement(gpus, tp, (mismatch,))
    chosen = service.tp is None and tp > 1
    decisions = (_tp_decision(flags, tp, f"one rank per pinned GPU ({_indices(gpus)})"),) if chosen else ()
    return Placement(gpus, tp, (), decisions)


def _place_pinned_replicas(name: str, service: Service, flags: EngineFlags, gpus: tuple[Gpu, ...]) -> Placement:
    """Pinned GPUs split into one block of `tp` GPUs per replica, in order."""
    replicas = service.replicas
    tp = service.tp or max(1, len(gpus) // replicas)
    if tp * replicas != len(gpus):
        mismatch = Finding(
            Severity.ERROR,
            f"{replicas} replicas at TP {tp} need {tp * replicas} GPUs; {len(gpus)} are pinned ({_indices(gpus)})",
            service=name,
            reason="each replica runs on GPUs of its own, one tensor-parallel rank per GPU",
            fix=f"pin {tp * replicas} GPUs, or change `tp` or `replicas`",
            code="tp-gpu-mismatch",
            key=setting_key(name, service, "tp", "replicas"),
        )
        return Placement(gpus[:tp], tp, (mismatch,))
    blocks = tuple(gpus[i * tp : (i + 1) * tp] for i in range(replicas))
    decisions = (_tp_decision(flags, tp, f"{len(gpus)} pinned GPUs for {replicas} replicas"),) if not service.tp else ()
    return Placement(blocks[0], tp, (), decisions, blocks)


def _place_free(
    name: str,
    service: Service,
    flags: EngineFlags,
    request: FitRequest | None,
    inventory: Inventory,
    free: Sequence[Gpu],
) -> Placement:
    decisions = []
    tp = service.tp
    if tp is None and request is not None:
        tp, reason = _choose_tp(request, free)
        decisions.append(_tp_decision(flags, tp, reason))
    tp = tp or 1
    replicas = service.replicas
    blocks = tuple(take_blocks(free, tp, replicas))
    if len(blocks) < replicas:
        return Placement((), tp, (_not_enough(name, service, tp, free, inventory),))
    every = tuple(g for block in blocks for g in block)
    reason = f"free GPUs (not pinned by any service) for TP {tp}" + (f" × {replicas} replicas" if replicas > 1 else "")
    decisions.append(Decision("gpus", list(_ids(every)), f"CUDA_VISIBLE_DEVICES={_indices(blocks[0], ',')}", reason))
    return Placement(blocks[0], tp, (), tuple(decisions), blocks if replicas > 1 else ())


def _choose_tp(request: FitRequest, free: Sequence[Gpu]) -> tuple[int, str]:
    block = largest_block(free)  # one node's: TP does not cross nodes
    best = smallest_fitting_tp(request, block)
    if best is not None:
        return best.tp, "the smallest valid TP that fits"
    valid = valid_sizes(explore_tp(request, block))
    tp = max(valid, default=1)
    return tp, f"no TP size up to {len(block)} fits on the free GPUs; planned at the largest valid one"


def _tp_decision(flags: EngineFlags, tp: int, reason: str) -> Decision:
    flag = f"{flags.tp} {tp}" if flags.tp else f"{tp} visible GPU(s)"
    return Decision("tp", tp, flag, reason)


def _no_gpu(name: str, service: Service, inventory: Inventory) -> Finding:
    where = "the cluster" if inventory.is_cluster else "this machine"
    return Finding(
        Severity.ERROR,
        f"{service.engine} needs an NVIDIA GPU and {where} has none",
        service=name,
        reason=f"no GPU was found ({inventory.describe()})",
        fix="run it on a GPU machine, or plan for one: `servestack plan --gpus 1xH100-80GB`",
        code="no-gpu",
        key=("services", name, "engine"),
    )


def _missing_gpus(name: str, missing: list[int], inventory: Inventory) -> Finding:
    if inventory.is_cluster:
        have = "no node it may run on has them all: " + "; ".join(
            f"{node.name} has GPUs {_indices(inventory.gpus_on(node.id)) or 'none'}" for node in inventory.nodes
        )
    else:
        have = f"this machine has GPUs {_indices(inventory.gpus)}" if inventory.gpus else "this machine has no GPU"
    return Finding(
        Severity.ERROR,
        f"GPU {', '.join(map(str, missing))} does not exist" + (" on one node" if inventory.is_cluster else ""),
        service=name,
        reason=f"{have} ({inventory.source})",
        fix="pin GPUs that exist, or plan for another machine with --gpus (e.g. 4xH200)",
        code="gpu-missing",
        key=("services", name, "gpus"),
    )


def _not_enough(name: str, service: Service, tp: int, free: Sequence[Gpu], inventory: Inventory) -> Finding:
    if inventory.is_cluster:
        return _fits_nowhere(name, service, tp, free, inventory)
    replicas = service.replicas
    taken = [g for g in inventory.gpus if g not in free]
    what = f"TP {tp}" + (f" × {replicas} replicas" if replicas > 1 else "")
    return Finding(
        Severity.ERROR,
        f"needs {tp * replicas} GPU(s) for {what} but only {len(free)} are free",
        service=name,
        reason=f"GPUs {_indices(taken)} are pinned or taken by other services" if taken else "the machine is too small",
        fix="pin `gpus:` to share GPUs with another service, or lower `tp`",
        code="not-enough-gpus",
        key=setting_key(name, service, "tp", "replicas"),
    )


def _fits_nowhere(name: str, service: Service, tp: int, free: Sequence[Gpu], inventory: Inventory) -> Finding:
    """On a cluster: some replica finds no node with `tp` free GPUs; the message names the largest free block."""
    blocks = take_blocks(free, tp, service.replicas)
    taken = {gpu for block in blocks for gpu in block}
    left = largest_block([gpu for gpu in free if gpu not in taken])
    block = f"{len(left)} GPU(s) on node {inventory.node_name(left[0].node)}" if left else "none: no GPU is free"
    return Finding(
        Severity.ERROR,
        f"replica {len(blocks)} of TP {tp} fits on no node: it needs {tp} free GPUs on one node, and the largest free "
        f"block is {block}",
        service=name,
        reason="tensor parallelism stays inside one node; servestack does not spread an engine over nodes",
        fix="lower `tp` or `replicas`, allow more nodes in `nodes`, or add a node with enough GPUs to the cluster",
        code="not-enough-gpus",
        key=setting_key(name, service, "tp", "replicas", "nodes"),
    )


def _ids(gpus: Sequence[Gpu]) -> tuple[int, ...]:
    return tuple(g.local_index for g in gpus)


def _indices(gpus: Sequence[Gpu], sep: str = ", ") -> str:
    return sep.join(str(g.local_index) for g in gpus)
