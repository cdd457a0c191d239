"""Context length: beyond the model's positions, longer than the KV cache holds, or reduced to fit.

A context the user set that does not fit even one sequence is an error naming the largest that does.
A context the user left out (the model's full context) is reduced to the largest that fits, with a
warning, because the engine would otherwise refuse to start (vLLM) or cap it silently (SGLang).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from servestack.plan.fit import Fit, FitRequest
from servestack.plan.model import Decision, Finding, Severity, Verdict
from servestack.plan.recommend import at_reduced_context, reduced_context

REDUCED_CONTEXT = "the largest context that fits"


@dataclass(frozen=True)
class ContextChoice:
    fit: Fit  # the evaluation at the context chosen
    findings: list[Finding] = field(default_factory=list)
    decision: Decision | None = None


def choose_context(name: str, request: FitRequest, fit: Fit) -> ContextChoice:
    findings = _beyond_positions(name, request)
    wanted = request.wanted_context
    if fit.verdict is Verdict.FITS:
        decision = None
        if request.context is None:
            decision = Decision("context_length", wanted, context_flag(request, wanted), "the engine's default context")
        return ContextChoice(fit, findings, decision)
    if not fit.fits_shorter_context or request.flags.context is None:  # no flag: a shorter context cannot be set
        return ContextChoice(fit, findings)
    largest = reduced_context(fit)
    if request.context is not None:
        findings.append(
            Finding(
                Severity.ERROR,
                f"context_length {wanted:,} does not fit; the largest that does is {largest:,}",
                service=name,
                reason=fit.reason,
                fix=f"set `context_length: {largest}` (or less), or use a larger TP or memory fraction",
                code="context-does-not-fit",
                key=("services", name, "context_length"),
            )
        )
        return ContextChoice(fit, findings)
    findings.append(
        Finding(
            Severity.WARNING,
            f"the model's full context ({wanted:,} tokens) does not fit; planned with {largest:,}",
            service=name,
            reason=fit.reason,
            fix="set `context_length` to choose it, or use a larger TP or memory fraction for the full context",
            code="context-reduced",
            key=("services", name),
        )
    )
    decision = Decision("context_length", largest, context_flag(request, largest), REDUCED_CONTEXT)
    return ContextChoice(at_reduced_context(request, fit), findings, decision)


def context_flag(request: FitRequest, context: int) -> str:
    """How the engine is told the context (engines without a flag size it themselves)."""
    flag = request.flags.context
    return f"{flag} {context}" if flag else f"{context} (the engine's own; it has no context flag)"


def _beyond_positions(name: str, request: FitRequest) -> list[Finding]:
    positions = request.facts.max_context
    wanted = request.wanted_context
    if not positions or wanted <= positions:
        return []
    strict = request.rule.strict_context
    return [
        Finding(
            Severity.ERROR if strict else Severity.WARNING,
            f"context_length {wanted:,} is longer than the model's {positions:,} positions",
            service=name,
            reason=f"{request.engine} refuses it" if strict else "quality degrades past the trained context",
            fix=f"set `context_length: {positions}` or less",
            code="context-too-long",
            key=("services", name, "context_length") if request.context is not None else ("services", name),
        )
    ]
