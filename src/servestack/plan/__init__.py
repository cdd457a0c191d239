"""The planner: from a Stack (plus hardware and model facts) to a Plan. Pure functions, no I/O."""

from servestack.plan.make import make_plan
from servestack.plan.model import Finding, Plan, ServicePlan, Severity

__all__ = ["Finding", "Plan", "ServicePlan", "Severity", "make_plan"]
