"""Recommendations: every TP size explored, the smallest valid TP that fits, and the context that fits.

A TP size is judged here exactly as the plan would judge the service at that size: when the stack
leaves the context to the engine and the model's full context does not fit but a shorter one does,
the plan runs it at the largest context that fits (with a warning), so that size fits. `--explore-tp`
and the fixes the plan suggests read the same list.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from servestack.engines import Parallelism, get_engine
from servestack.errors import PlanError
from servestack.gpus import Gpu, Inventory
from servestack.modelinfo import ModelFacts
from servestack.plan.fit import MIN_CONTEXT, Fit, FitRequest, evaluate
from servestack.plan.model import Verdict
from servestack.stack import Service

CONTEXT_STEP = 1024  # a reduced context is rounded down to a multiple of this


def evaluate_as_planned(request: FitRequest, gpus: Sequence[Gpu], tp: int) -> Fit:
    """`evaluate`, at the largest context that fits when the stack sets none and the full one does not."""
    fit = evaluate(request, gpus, tp)
    if request.context is not None or not fit.fits_shorter_context:
        return fit
    return at_reduced_context(request, fit)


def at_reduced_context(request: FitRequest, fit: Fit) -> Fit:
    """`fit` (whose full context does not fit) evaluated again at the largest context that does."""
    largest = reduced_context(fit)
    shorter = evaluate(request, fit.gpus, fit.tp, context=largest)
    why = f"; the model's full {request.wanted_context:,} tokens do not fit, so the context is {largest:,}"
    return dataclasses.replace(shorter, reason=shorter.reason + why)


def explore_tp(request: FitRequest, gpus: Sequence[Gpu]) -> list[Fit]:
    """Every TP size from 1 to the number of `gpus`, each on the first that many GPUs (the seed-001 table)."""
    return [evaluate_as_planned(request, gpus[:tp], tp) for tp in range(1, len(gpus) + 1)]


def explore_service(name: str, service: Service, facts: ModelFacts | None, inventory: Inventory) -> list[Fit]:
    """`plan --explore-tp`: `explore_tp` for one service on the inventory's GPUs; PlanError when there is nothing
    to explore (an engine without tensor parallelism, a model nothing is known about, no GPU)."""
    if get_engine(service.engine).parallelism is not Parallelism.TENSOR:
        raise PlanError(f"{name} runs on {service.engine}, which has no tensor parallelism to explore")
    if facts is None:
        raise PlanError(f"nothing is known about {service.model!r}", fix="download it, or give a local path")
    if inventory.is_cpu:
        raise PlanError("no GPU to explore TP sizes on", fix="plan for a GPU machine: --gpus 4xH200")
    return explore_tp(FitRequest.of(service, facts), inventory.gpus)


def smallest_fitting_tp(request: FitRequest, gpus: Sequence[Gpu]) -> Fit | None:
    """The smallest TP that `explore_tp` says fits, preferring one that holds the model's full context
    (a shorter one only when no size does). None: nothing fits."""
    fits = [fit for fit in explore_tp(request, gpus) if fit.verdict is Verdict.FITS]
    full = next((fit for fit in fits if fit.context >= request.wanted_context), None)
    return full or next(iter(fits), None)


def reduced_context(fit: Fit) -> int:
    """The context to use when the full one does not fit: the largest that does, rounded down."""
    if fit.max_context >= CONTEXT_STEP:
        return fit.max_context // CONTEXT_STEP * CONTEXT_STEP
    return max(fit.max_context, MIN_CONTEXT)


def valid_sizes(fits: Sequence[Fit]) -> list[int]:
    return [fit.tp for fit in fits if fit.verdict is not Verdict.INVALID]
