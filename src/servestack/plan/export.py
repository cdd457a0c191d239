"""The plan as JSON-ready dicts: the stable schema `servestack plan --json` prints (docs/plan.md).

Bytes are integers in bytes; fractions are floats in 0..1; absent figures are null. Fields are only
ever added within one schema version.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from servestack.gpus import Inventory
from servestack.modelinfo import ModelFacts
from servestack.plan.calibration import CalibrationRecord, predicted_of
from servestack.plan.fit import Fit
from servestack.plan.model import Decision, Finding, GpuMemory, Plan, ServicePlan
from servestack.plan.residency import Residency
from servestack.stack import Stack

PLAN_SCHEMA = "servestack.plan/1"
EXPLORE_SCHEMA = "servestack.explore-tp/1"


def plan_to_dict(plan: Plan) -> dict[str, Any]:
    return {
        "schema": PLAN_SCHEMA,
        "ok": not plan.errors,
        "inventory": inventory_to_dict(plan.inventory),
        "services": {name: _service(sp, plan.inventory) for name, sp in plan.services.items()},
        "findings": [_finding(f, plan.stack) for f in plan.all_findings()],
        "residency": residency_to_dict(plan.residency) if plan.residency is not None else None,
    }


def residency_to_dict(residency: Residency) -> dict[str, Any]:
    """Which on-demand services can be loaded together, and the pairs that exclude each other (and why)."""
    return {
        "on_demand": {
            name: {str(g): share for g, share in shares.items()} for name, shares in residency.shares.items()
        },
        "groups": [list(group) for group in residency.groups()],
        "exclusions": [
            {"services": list(c.services), "gpu": c.gpu, "total": round(c.total, 4), "why": c.describe()}
            for c in residency.exclusions()
        ],
        "sleep_host_bytes": dict(residency.sleep_host_bytes),
    }


def explore_to_dict(service: str, fits: Sequence[Fit]) -> dict[str, Any]:
    return {"schema": EXPLORE_SCHEMA, "service": service, "rows": [_fit(fit) for fit in fits]}


def inventory_to_dict(inventory: Inventory) -> dict[str, Any]:
    return {
        "source": inventory.source,
        "driver_version": inventory.driver_version,
        "cuda_driver_version": inventory.cuda_driver_version,
        "gpus": [
            {
                "index": g.index,
                "name": g.name,
                "total_bytes": g.total_bytes,
                "free_bytes": g.free_bytes,
                "node": g.node,
                "node_index": g.local_index,
            }
            for g in inventory.gpus
        ],
        "nodes": [
            {"id": n.id, "name": n.name, "address": n.address, "labels": list(n.labels)} for n in inventory.nodes
        ],
    }


def _service(sp: ServicePlan, inventory: Inventory) -> dict[str, Any]:
    return {
        "engine": sp.service.engine,
        "model": sp.config.model,
        "verdict": sp.verdict.value,
        "gpus": list(sp.config.gpus),
        "replica_gpus": [list(block) for block in sp.replica_gpus],
        "nodes": list(sp.nodes),
        "replicas": [_replica(sp, index, inventory) for index in range(len(sp.places))],
        "tp": sp.config.tp,
        "context_length": sp.config.context_length,
        "memory_fraction": sp.config.memory_fraction,
        "load": sp.service.load,
        "weights_bytes": sp.weights_bytes,
        "kv_bytes_per_token": sp.kv_bytes_per_token,
        "kv_tokens": sp.kv_tokens,
        "full_context_sequences": sp.full_context_sequences,
        "memory_per_gpu": _memory(sp.memory) if sp.memory else None,
        "facts": _facts(sp.facts) if sp.facts else None,
        "decisions": [_decision(d) for d in sp.decisions],
        "calibration": _calibration(sp, sp.calibration) if sp.calibration else None,
    }


def _replica(sp: ServicePlan, index: int, inventory: Inventory) -> dict[str, Any]:
    """On a cluster: where one replica runs (its node, its GPUs' indices there) and its GPUs' memory."""
    place = sp.places[index]
    gpus = [inventory.gpu(i) for i in (sp.replica_gpus[index] if sp.replica_gpus else sp.config.gpus)]
    return {
        "node": place.node,
        "node_name": inventory.node_name(place.node) if place.node else None,
        "gpus": list(place.gpus),
        "gpu_total_bytes": [g.total_bytes for g in gpus if g is not None],
        "memory_per_gpu": _memory(sp.memory) if sp.memory else None,
    }


def _memory(memory: GpuMemory) -> dict[str, Any]:
    return {
        "total_bytes": memory.total,
        "weights_bytes": memory.weights,
        "kv_bytes": max(memory.kv, 0),
        "overhead_bytes": memory.overhead,
        "left_free_bytes": memory.free,
        "in_use_bytes": memory.in_use,
        "share": round(memory.share, 4),
        "fraction": memory.fraction,
    }


def _facts(facts: ModelFacts) -> dict[str, Any]:
    return {
        "model_id": facts.model_id,
        "source": facts.source,
        "architecture": facts.architecture,
        "parameters": facts.parameters,
        "layers": facts.layers,
        "hidden_size": facts.hidden_size,
        "attention_heads": facts.attention_heads,
        "kv_heads": facts.kv_heads,
        "head_dim": facts.head_dim,
        "vocab_size": facts.vocab_size,
        "max_context": facts.max_context,
        "dtype": facts.dtype,
        "quantization": facts.quantization,
        "moe_experts": facts.moe.experts if facts.moe else None,
        "mla": facts.mla is not None,
    }


def _calibration(sp: ServicePlan, record: CalibrationRecord) -> dict[str, Any]:
    """The last start here with this set-up, and each of its figures against this plan's prediction."""
    compared = [
        {"figure": c.figure, "predicted": c.predicted, "allocated": c.allocated, "error": round(c.error, 4)}
        for c in record.compare(predicted_of(sp))
    ]
    return {**record.model_dump(mode="json", exclude={"setup", "predicted"}), "compared": compared}


def _decision(decision: Decision) -> dict[str, Any]:
    return {"setting": decision.setting, "value": decision.value, "flag": decision.flag, "reason": decision.reason}


def _finding(finding: Finding, stack: Stack) -> dict[str, Any]:
    return {
        "severity": finding.severity.value,
        "code": finding.code,
        "service": finding.service,
        "key": ".".join(map(str, finding.key)) or None,
        "line": stack.line(finding.key) if finding.key else None,
        "message": finding.message,
        "reason": finding.reason,
        "fix": finding.fix,
    }


def _fit(fit: Fit) -> dict[str, Any]:
    memory = fit.memory
    return {
        "tp": fit.tp,
        "gpus": [g.index for g in fit.gpus],
        "verdict": fit.verdict.value,
        "reason": fit.reason,
        "weights_per_gpu_bytes": memory.weights if memory else None,
        "kv_per_gpu_bytes": max(memory.kv, 0) if memory else None,
        "overhead_per_gpu_bytes": memory.overhead if memory else None,
        "kv_tokens": fit.kv_tokens if memory else None,
        "context": fit.context if memory else None,
        "max_context": fit.max_context if memory else None,
        "full_context_sequences": fit.sequences if memory else None,
    }
