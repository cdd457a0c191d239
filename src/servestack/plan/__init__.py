"""The planner: from a Stack (plus hardware and model facts) to a Plan. Pure functions, no I/O.

Names load on first use: `status` reads calibration records (`plan/calibration.py`) without importing
the planner and the engine adapters.
"""

from typing import TYPE_CHECKING

from servestack.lazy import lazy_attributes

if TYPE_CHECKING:
    from servestack.engines.tp import TpProblem
    from servestack.plan.fit import Fit, FitRequest, evaluate
    from servestack.plan.host import HostFacts, Unresolved
    from servestack.plan.make import make_plan
    from servestack.plan.model import Decision, Finding, GpuMemory, Plan, ServicePlan, Severity, Verdict
    from servestack.plan.recommend import explore_service, explore_tp, smallest_fitting_tp
    from servestack.plan.tp import tp_problems, valid_tp_sizes

_HOMES = {
    "Decision": "model",
    "Finding": "model",
    "Fit": "fit",
    "FitRequest": "fit",
    "GpuMemory": "model",
    "HostFacts": "host",
    "Plan": "model",
    "ServicePlan": "model",
    "Severity": "model",
    "TpProblem": "tp",
    "Unresolved": "host",
    "Verdict": "model",
    "evaluate": "fit",
    "explore_service": "recommend",
    "explore_tp": "recommend",
    "make_plan": "make",
    "smallest_fitting_tp": "recommend",
    "tp_problems": "tp",
    "valid_tp_sizes": "tp",
}

__all__ = [
    "Decision",
    "Finding",
    "Fit",
    "FitRequest",
    "GpuMemory",
    "HostFacts",
    "Plan",
    "ServicePlan",
    "Severity",
    "TpProblem",
    "Unresolved",
    "Verdict",
    "evaluate",
    "explore_service",
    "explore_tp",
    "make_plan",
    "smallest_fitting_tp",
    "tp_problems",
    "valid_tp_sizes",
]

__getattr__ = lazy_attributes(__name__, _HOMES)
