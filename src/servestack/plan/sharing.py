"""Services sharing a GPU: their memory fractions and memory are summed per GPU.

Each engine claims a share of every GPU it runs on (vLLM, SGLang and mistral.rs their memory
fraction; llama.cpp its weights, KV and buffers). Shares over 1.0 cannot all be honoured; shares that
fit but leave no room for each process's CUDA context are over capacity. Either is an error naming
every service on the GPU. Only `always` services are summed here: on-demand services are loaded
when asked for, and which of them may be loaded together is the residency's question (residency.py).
"""

from __future__ import annotations

from collections.abc import Mapping

from servestack.engines import ENGINES, Unchecked
from servestack.engines.memory import CUDA_CONTEXT
from servestack.gpus import GIB, Gpu, Inventory
from servestack.plan.model import Finding, ServicePlan, Severity, setting_key

Claim = tuple[str, float]  # (service, share of the GPU)


def sharing_findings(services: Mapping[str, ServicePlan], inventory: Inventory) -> list[Finding]:
    findings: list[Finding] = []
    always = {name: sp for name, sp in services.items() if not sp.service.on_demand}
    for gpu in inventory.gpus:
        claims = [(name, share) for name, sp in always.items() if (share := gpu_share(sp, gpu)) is not None]
        if len(claims) < 2:
            continue
        findings += _check(gpu, claims, services)
    return findings


def gpu_share(plan: ServicePlan, gpu: Gpu) -> float | None:
    """The share of `gpu` the service claims (None: it does not run on it, or claims nothing known)."""
    if gpu.index not in plan.all_gpus:
        return None
    if plan.memory is not None:
        return plan.memory.share
    return plan.config.memory_fraction


def _check(gpu: Gpu, claims: list[Claim], services: Mapping[str, ServicePlan]) -> list[Finding]:
    total = sum(share for _, share in claims)
    listing = " and ".join(f"{name} claims {share:.2f}" for name, share in claims)
    names = ", ".join(name for name, _ in claims)
    if total > 1.0:
        return [
            Finding(
                Severity.ERROR,
                f"{gpu.label} is over-committed: {listing} of it ({total:.2f} > 1.0)",
                reason=f"{names} share {gpu.describe()}; each engine sizes its memory as a fraction of the GPU, "
                "and together they ask for more than all of it",
                fix=_fix(gpu, claims, services),
                code="gpu-over-committed",
            )
        ]
    contexts = len(claims) * CUDA_CONTEXT / gpu.total_bytes
    if total + contexts > 1.0:
        return [
            Finding(
                Severity.ERROR,
                f"{gpu.label} is over capacity: {listing} ({total:.2f}), plus "
                f"{len(claims)} CUDA contexts of ~{CUDA_CONTEXT / GIB:.2f} GiB",
                reason=f"{names} share {gpu.describe()}; each process also holds a CUDA context outside its fraction",
                fix=_fix(gpu, claims, services),
                code="gpu-over-capacity",
            )
        ]
    return _startup_order_warnings(gpu, claims, services)


def _fix(gpu: Gpu, claims: list[Claim], services: Mapping[str, ServicePlan]) -> str:
    """Shrink a fraction that can shrink (preferring one the user did not set), else separate them."""
    contexts = len(claims) * CUDA_CONTEXT / gpu.total_bytes
    order = sorted(claims, key=lambda claim: services[claim[0]].service.memory_fraction is not None)
    for name, _ in order:
        memory = services[name].memory
        if memory is None or memory.fraction is None:  # llama.cpp has no fraction to lower
            continue
        room = 1.0 - contexts - sum(share for other, share in claims if other != name)
        if room >= _min_share(services[name]):
            return f"set `memory_fraction: {int(room * 100) / 100:.2f}` (or less) on {name}"
    needs = ", ".join(f"{name} needs ≥ {_min_share(services[name]):.2f}" for name, _ in claims)
    return f"give {order[-1][0]} a GPU of its own ({needs} of GPU {gpu.index})"


def _min_share(plan: ServicePlan) -> float:
    """The smallest share that still holds the weights and one full-context sequence (+2%)."""
    memory = plan.memory
    if memory is None:
        return plan.config.memory_fraction or 0.0
    sequence = (plan.kv_bytes_per_token or 0) * (plan.config.context_length or 0)
    return (memory.weights + sequence) / memory.total + 0.02


def _startup_order_warnings(gpu: Gpu, claims: list[Claim], services: Mapping[str, ServicePlan]) -> list[Finding]:
    """A warning for each service whose engine sizes itself by what the others left free when it starts."""
    notes = {name: note for name, _ in claims if (note := _start_order(services[name])) is not None}
    return [
        Finding(
            Severity.WARNING,
            f"{name} shares {gpu.label} with {', '.join(n for n, _ in claims if n != name)}",
            service=name,
            reason=note,
            fix="start it first, or give it a GPU of its own",
            code="shared-gpu-start-order",
            key=setting_key(name, services[name].service, "gpus"),
        )
        for name, note in notes.items()
    ]


def _start_order(plan: ServicePlan) -> str | None:
    engine = ENGINES.get(plan.service.engine)
    if engine is None or isinstance(engine.memory, Unchecked):
        return None
    return engine.memory.start_order
