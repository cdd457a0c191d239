"""The planner: from a Stack (plus hardware and model facts) to a Plan. Pure functions, no I/O."""

from servestack.engines.tp import TpProblem
from servestack.plan.fit import Fit, FitRequest, evaluate
from servestack.plan.host import HostFacts, Unresolved
from servestack.plan.make import make_plan
from servestack.plan.model import Decision, Finding, GpuMemory, Plan, ServicePlan, Severity, Verdict
from servestack.plan.recommend import explore_tp, smallest_fitting_tp
from servestack.plan.tp import tp_problems, valid_tp_sizes

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
    "explore_tp",
    "make_plan",
    "smallest_fitting_tp",
    "tp_problems",
    "valid_tp_sizes",
]
