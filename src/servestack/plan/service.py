"""Plan one service: place it, check it fits, choose what the user left out, explain every failure."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from servestack.engines import ENGINES, Engine, EngineConfig, Unchecked
from servestack.engines.memory import kv_bytes_per_token, kv_element_bytes, model_weights, weight_dtype
from servestack.gpus import Gpu, Inventory
from servestack.modelinfo import ModelFacts
from servestack.plan.context import REDUCED_CONTEXT, choose_context, context_flag
from servestack.plan.fit import Fit, FitRequest, evaluate, gib
from servestack.plan.model import Decision, Finding, ReplicaPlace, ServicePlan, Severity, Verdict, setting_key
from servestack.plan.placement import Placement, place_pinned, place_service
from servestack.plan.recommend import explore_tp, smallest_fitting_tp, valid_sizes
from servestack.stack import Service, Stack
from servestack.stack.paths import names_local_model

CODES = {"weights": "weights-do-not-fit", "startup": "startup-refused", "kv": "kv-does-not-fit"}


@dataclasses.dataclass(frozen=True)
class ServiceInput:
    """One service and what the plan knows about it."""

    name: str
    service: Service
    model: str  # resolved: a local path for package references
    facts: ModelFacts | None
    model_missing: bool = False  # a local model that is not on this machine (a host finding says so)
    engine_version: str | None = None  # the installed engine's version, when known


def plan_service(stack: Stack, item: ServiceInput, inventory: Inventory, free: Sequence[Gpu]) -> ServicePlan:
    """Plan `item` on `inventory`; `free` are the GPUs no service has pinned or taken yet."""
    return _with_refusals(_plan(stack, item, inventory, free))


def _plan(stack: Stack, item: ServiceInput, inventory: Inventory, free: Sequence[Gpu]) -> ServicePlan:
    name, service, facts = item.name, item.service, item.facts
    config = EngineConfig(
        model=item.model,
        served_names=tuple(stack.served_names(name)),
        host=service.host,
        port=service.port,
        gpus=tuple(service.gpus or ()),
        tp=service.tp or 1,
        context_length=service.context_length,
        memory_fraction=service.memory_fraction,
    )
    plan = ServicePlan(name=name, service=service, config=config)
    engine = ENGINES.get(service.engine)
    if engine is None or isinstance(engine.memory, Unchecked):  # placement only (`_with_refusals` names the engine)
        placement = (
            place_pinned(name, service, inventory)
            if engine is None
            else place_service(name, service, None, inventory, free)
        )
        plan = _placed(plan, placement, facts, inventory)
        if engine is not None and isinstance(engine.memory, Unchecked) and placement.gpus:
            unchecked = _memory_unchecked(name, service, engine.memory)
            plan = dataclasses.replace(plan, findings=[*plan.findings, unchecked])
        return dataclasses.replace(plan, verdict=Verdict.INVALID if placement.failed else Verdict.UNCHECKED)
    request = FitRequest.of(service, facts, item.engine_version) if facts is not None else None
    placement = place_service(name, service, request, inventory, free)
    plan = _placed(plan, placement, facts, inventory)
    if placement.failed:
        return dataclasses.replace(plan, verdict=Verdict.INVALID)
    if request is None:
        return _unknown_model(plan, engine, placement, item)
    if not placement.gpus:
        return _on_cpu(plan, request)
    return _on_gpus(plan, request, placement, inventory)


def _placed(plan: ServicePlan, placement: Placement, facts: ModelFacts | None, inventory: Inventory) -> ServicePlan:
    config = dataclasses.replace(plan.config, gpus=tuple(g.index for g in placement.gpus), tp=placement.tp)
    return dataclasses.replace(
        plan,
        replica_gpus=tuple(tuple(g.index for g in block) for block in placement.replica_blocks),
        nodes=placement.nodes,
        places=_places(placement, plan.service.replicas, inventory),
        config=config,
        facts=facts,
        findings=[*plan.findings, *placement.findings],
        decisions=list(placement.decisions),
    )


def _places(placement: Placement, replicas: int, inventory: Inventory) -> tuple[ReplicaPlace, ...]:
    """On a cluster, each replica's node and its GPUs there; a replica without GPUs is on the one node it may
    use, or on any."""
    if not inventory.is_cluster:
        return ()
    blocks = placement.replica_blocks or (placement.gpus,) * replicas
    only = placement.nodes[0] if len(placement.nodes) == 1 else None
    return tuple(
        ReplicaPlace(block[0].node if block else only, tuple(g.local_index for g in block)) for block in blocks
    )


def _on_gpus(plan: ServicePlan, request: FitRequest, placement: Placement, inventory: Inventory) -> ServicePlan:
    choice = choose_context(plan.name, request, evaluate(request, placement.gpus, placement.tp))
    fit = choice.fit
    findings = [*plan.findings, *choice.findings]
    if not any(f.code == "context-does-not-fit" for f in choice.findings):
        findings += _fit_findings(plan, request, fit, inventory)
    if fit.weights is not None and fit.weights.unknown_method:
        findings.append(_quantization_unknown(plan, fit.weights.unknown_method, fit.weights.basis))
    decisions = [*plan.decisions, *([choice.decision] if choice.decision else [])]
    if plan.service.memory_fraction is None and fit.memory is not None and fit.memory.fraction is not None:
        decisions.append(_fraction_decision(request.adapter, fit.memory.fraction, placement))
    # Engine defaults the planner assumed stay out of the command (it matches what the user wrote);
    # only a context reduced to fit is passed, since the engine would otherwise refuse to start.
    context = request.context if request.context is not None else _reduced(choice.decision)
    config = dataclasses.replace(plan.config, context_length=context)
    return dataclasses.replace(
        plan,
        config=config,
        findings=findings,
        decisions=decisions,
        verdict=fit.verdict,
        memory=fit.memory,
        weights_bytes=fit.weights.bytes if fit.weights else None,
        kv_bytes_per_token=fit.kv_per_token or None,
        kv_tokens=fit.kv_tokens,
        full_context_sequences=fit.sequences,
    )


def _on_cpu(plan: ServicePlan, request: FitRequest) -> ServicePlan:
    """llama.cpp on the CPU: weights and KV live in RAM; report them, nothing to fit against."""
    facts = request.facts
    context = request.wanted_context
    element = kv_element_bytes(request.kv_cache_dtype, weight_dtype(facts, request.dtype))
    decisions = list(plan.decisions)
    if request.context is None:
        flag = context_flag(request, context)
        decisions.append(Decision("context_length", context, flag, "the engine's default context"))
    return dataclasses.replace(
        plan,
        decisions=decisions,
        verdict=Verdict.CPU,
        weights_bytes=model_weights(facts, dtype=request.dtype, quantization=request.quantization).bytes,
        kv_bytes_per_token=kv_bytes_per_token(facts, 1, element),
        kv_tokens=context,
        full_context_sequences=1,
    )


def _unknown_model(plan: ServicePlan, engine: Engine, placement: Placement, item: ServiceInput) -> ServicePlan:
    findings = list(plan.findings)
    if placement.gpus and not item.model_missing:
        findings.append(_facts_unknown(plan.name, plan.service.model))
    decisions = list(plan.decisions)
    if plan.service.memory_fraction is None and placement.gpus and not isinstance(engine.memory, Unchecked):
        fraction = engine.memory.default_fraction(min(placement.gpus, key=lambda g: g.total_bytes), placement.tp)
        if fraction is not None:
            decisions.append(_fraction_decision(engine, fraction, placement))
    return dataclasses.replace(plan, findings=findings, decisions=decisions)


def _quantization_unknown(plan: ServicePlan, method: str, basis: str) -> Finding:
    return Finding(
        Severity.WARNING,
        f"quantisation {method!r} is unknown to servestack: its weights are planned as {basis}",
        service=plan.name,
        reason="servestack has no rule for how many bits this method stores per weight",
        fix="check the weights figure against the engine's log; the plan may be off either way",
        code="quantization-unknown",
        key=setting_key(plan.name, plan.service, "quantization", "model"),
    )


def _memory_unchecked(name: str, service: Service, unchecked: Unchecked) -> Finding:
    return Finding(
        Severity.WARNING,
        f"memory unchecked for {service.engine}: {unchecked.reason}",
        service=name,
        reason="servestack has no memory rule for this engine",
        code="memory-unchecked",
        key=setting_key(name, service, "gpus"),
    )


def _facts_unknown(name: str, model: str) -> Finding:
    if names_local_model(model):
        reason = "it has no GGUF header and no config.json that servestack can read"
        fix = "point `model` at the .gguf file, or at the folder holding config.json"
    else:
        reason = "it is not in the HF cache, and not in the built-in catalog"
        fix = "download it first (`servestack pull`; the HF cache is read), or give a local path"
    return Finding(
        Severity.WARNING,
        f"nothing is known about model {model!r}: memory not checked",
        service=name,
        reason=reason,
        fix=fix,
        code="facts-unknown",
        key=("services", name, "model"),
    )


def _fit_findings(plan: ServicePlan, request: FitRequest, fit: Fit, inventory: Inventory) -> list[Finding]:
    name = plan.name
    if fit.verdict is Verdict.INVALID:
        valid = valid_sizes(explore_tp(request, inventory.gpus)) if inventory.gpus else []
        sizes = ", ".join(map(str, valid)) or "none on this machine"
        return [
            Finding(
                Severity.ERROR,
                f"TP {fit.tp} is not valid for {request.facts.model_id} on {request.engine}",
                service=name,
                reason=fit.reason,
                fix="; ".join(filter(None, [f"use a valid TP size ({sizes})", _recommendation(request, inventory)])),
                code="tp-invalid",
                key=setting_key(name, plan.service, "tp", "gpus"),
            )
        ]
    if fit.verdict is not Verdict.DOES_NOT_FIT:
        return []
    kind = "weights" if fit.reason.startswith("weights take") else "startup" if fit.startup else "kv"
    return [
        Finding(
            Severity.ERROR,
            f"{request.facts.model_id} does not fit on GPU {', '.join(str(g.index) for g in fit.gpus)} at TP {fit.tp}",
            service=name,
            reason=fit.reason,
            fix=_recommendation(request, inventory)
            or "use a quantised checkpoint (e.g. `quantization: fp8`) or larger GPUs",
            code=CODES[kind],
            key=("services", name, "model"),
        )
    ]


def _recommendation(request: FitRequest, inventory: Inventory) -> str:
    best = smallest_fitting_tp(request, inventory.gpus) if inventory.gpus else None
    if best is None or best.memory is None:
        return ""
    flag = request.flags.tp
    how = f"`tp: {best.tp}` on {best.tp} GPUs" + (f" ({flag} {best.tp})" if flag else "")
    shorter = f" at a context of {best.context:,}" if best.context < request.wanted_context else ""
    return f"{how} fits{shorter}: {gib(best.memory.weights)} of weights per GPU, {best.kv_tokens:,} KV tokens"


def _reduced(decision: Decision | None) -> int | None:
    """The context the planner reduced to fit, if it had to."""
    if decision is None or decision.reason != REDUCED_CONTEXT:
        return None
    return int(decision.value)  # type: ignore[call-overload]


def _fraction_decision(engine: Engine, fraction: float, placement: Placement) -> Decision:
    gpu = min(placement.gpus, key=lambda g: g.total_bytes)
    reason = f"{engine.name}'s default for {gpu.describe()} at TP {placement.tp} (pass it to pin it)"
    return Decision("memory_fraction", fraction, f"{engine.flags.fraction} {fraction}", reason)


def _with_refusals(plan: ServicePlan) -> ServicePlan:
    """The settings the engine's command builder would refuse at `up`, as findings (one error per key)."""
    engine = ENGINES.get(plan.service.engine)
    if engine is None:
        return dataclasses.replace(plan, findings=[*plan.findings, _engine_unavailable(plan.name, plan.service.engine)])
    flagged = {f.key for f in plan.findings if f.severity is Severity.ERROR}
    refused = [
        Finding(
            Severity.ERROR,
            refusal.message,
            service=plan.name,
            fix=refusal.fix,
            code="setting-unsupported",
            key=setting_key(plan.name, plan.service, *refusal.settings),
        )
        for refusal in engine.refusals(plan.service, plan.config)
    ]
    return dataclasses.replace(plan, findings=[*plan.findings, *(f for f in refused if f.key not in flagged)])


def _engine_unavailable(name: str, engine: str) -> Finding:
    return Finding(
        Severity.ERROR,
        f"engine {engine!r} is not built into this servestack yet",
        service=name,
        fix=f"use one of: {', '.join(sorted(ENGINES))}",
        code="engine-unavailable",
        key=("services", name, "engine"),
    )
