"""Recommendations: the smallest valid TP that fits, every TP size explored, and the context that fits."""

from __future__ import annotations

from collections.abc import Sequence

from servestack.gpus import Gpu
from servestack.plan.fit import MIN_CONTEXT, Fit, FitRequest, evaluate
from servestack.plan.model import Verdict

CONTEXT_STEP = 1024  # a reduced context is rounded down to a multiple of this


def explore_tp(request: FitRequest, gpus: Sequence[Gpu]) -> list[Fit]:
    """Every TP size from 1 to the number of `gpus`, each on the first that many GPUs (the seed-001 table)."""
    return [evaluate(request, gpus[:tp], tp) for tp in range(1, len(gpus) + 1)]


def smallest_fitting_tp(request: FitRequest, gpus: Sequence[Gpu]) -> Fit | None:
    """The smallest valid TP that holds a full-context sequence on `gpus`; when the context was not
    given and none does, the smallest that holds a shorter one. None: nothing fits."""
    fits = explore_tp(request, gpus)
    full = next((fit for fit in fits if fit.verdict is Verdict.FITS), None)
    if full is not None or request.context is not None:
        return full
    return next((fit for fit in fits if fit.fits_shorter_context), None)


def reduced_context(fit: Fit) -> int:
    """The context to use when the full one does not fit: the largest that does, rounded down."""
    if fit.max_context >= CONTEXT_STEP:
        return fit.max_context // CONTEXT_STEP * CONTEXT_STEP
    return max(fit.max_context, MIN_CONTEXT)


def valid_sizes(fits: Sequence[Fit]) -> list[int]:
    return [fit.tp for fit in fits if fit.verdict is not Verdict.INVALID]
