"""A service's plan beside what its engine allocated the last time it started here with the same set-up.

The CLI reads the calibration records the supervisor kept (the planner does no I/O) and passes them in
`HostFacts`; a record applies when its set-up is the one planned now (`plan/calibration.py`). A figure
the engine allocated that differs from the prediction by more than 10% is a warning, `calibration-differs`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from servestack.engines import get_engine
from servestack.plan.calibration import CalibrationRecord, Comparison, predicted_of, setup_of
from servestack.plan.fit import gib
from servestack.plan.model import Finding, ServicePlan, Severity

FIGURES = {"kv_tokens": "KV tokens", "kv_bytes": "KV cache per GPU", "weights_bytes": "weights per GPU"}


def calibrated(plan: ServicePlan, records: Sequence[CalibrationRecord]) -> ServicePlan:
    """`plan` with the latest record of its set-up, and a warning when the engine allocated otherwise."""
    record = latest_applicable(plan, records)
    if record is None:
        return plan
    differing = [c for c in record.compare(predicted_of(plan)) if c.differs]
    findings = [*plan.findings, _differs(plan, record, differing)] if differing else plan.findings
    return dataclasses.replace(plan, calibration=record, findings=findings)


def latest_applicable(plan: ServicePlan, records: Sequence[CalibrationRecord]) -> CalibrationRecord | None:
    """The newest record made with exactly this set-up (model, GPUs, TP, context, fraction, dtypes, flags)."""
    replicas = plan.service.replicas
    fitting = [r for r in records if r.replica < replicas and r.setup == setup_of(plan, r.replica)]
    return max(fitting, key=lambda r: r.time, default=None)


def describe(figure: str, value: int) -> str:
    return f"{value:,}" if figure == "kv_tokens" else gib(value)


def _differs(plan: ServicePlan, record: CalibrationRecord, differing: list[Comparison]) -> Finding:
    engine = get_engine(plan.service.engine).display_name
    what = "; ".join(
        f"{FIGURES[c.figure]} {describe(c.figure, c.allocated)}, the plan predicts "
        f"{describe(c.figure, c.predicted)} ({c.error:+.0%})"
        for c in differing
    )
    version = f" {record.engine_version}" if record.engine_version else ""
    return Finding(
        Severity.WARNING,
        f"{engine}{version} allocated otherwise at its last start here with these settings: {what}",
        service=plan.name,
        reason="the engine's own startup log states these figures (read when it became ready); the planner's "
        "rule for this engine does not match this machine or engine version",
        fix="trust the measured figures (the plan's table shows them); start the service again to measure anew "
        "after an engine upgrade",
        code="calibration-differs",
        key=("services", plan.name),
    )
