"""A service's plan beside what its engine allocated the last time it started here with the same set-up.

The CLI reads the calibration records the supervisor kept (the planner does no I/O) and passes them in
`HostFacts`; a record applies when its set-up is the one planned now (`plan/calibration.py`). A figure
the engine allocated that differs from the prediction by more than 10% is a warning, `calibration-differs`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from servestack.engines import get_engine
from servestack.gpus import GIB
from servestack.plan.calibration import CalibrationRecord, Comparison, predicted_of, setup_of
from servestack.plan.model import Finding, ServicePlan, Severity

FIGURES = {"kv_tokens": "KV tokens", "kv_bytes": "KV cache", "weights_bytes": "weights"}  # bytes: per GPU
MIB = 2**20


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
    """`2,048` tokens, `15.0 GiB`, `92 MiB`."""
    if figure == "kv_tokens":
        return f"{value:,}"
    return f"{value / GIB:.1f} GiB" if abs(value) >= GIB else f"{value / MIB:.0f} MiB"


def _differs(plan: ServicePlan, record: CalibrationRecord, differing: list[Comparison]) -> Finding:
    engine = get_engine(plan.service.engine).display_name
    version = f" {record.engine_version}" if record.engine_version else ""
    what = "; ".join(
        f"{FIGURES[c.figure]} {describe(c.figure, c.allocated)} where the plan predicts "
        f"{describe(c.figure, c.predicted)} ({c.change})"
        for c in differing
    )
    return Finding(
        Severity.WARNING,
        f"at its last start here with these settings {engine}{version} allocated {what}",
        service=plan.name,
        reason="the engine's own startup log states these figures (read when it became ready); the planner's "
        "rule for this engine does not match this machine or engine version",
        fix="the measured figures are what the engine does here (the `measured` row): plan by them; after an "
        "engine upgrade, start the service again to measure anew",
        code="calibration-differs",
        key=("services", plan.name),
    )
