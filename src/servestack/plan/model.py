"""What a plan is: per service the engine configuration decided, and findings that explain it."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from servestack.engines import EngineConfig
from servestack.stack import Service, Stack


class Severity(Enum):
    ERROR = "error"  # blocks `up` (unless --force)
    WARNING = "warning"


@dataclass(frozen=True)
class Finding:
    """One thing the planner found: what, why, and what to do about it."""

    severity: Severity
    message: str
    service: str | None = None
    reason: str = ""
    fix: str = ""


@dataclass(frozen=True)
class ServicePlan:
    name: str
    service: Service
    config: EngineConfig
    findings: list[Finding] = field(default_factory=list)


@dataclass(frozen=True)
class Plan:
    stack: Stack
    services: dict[str, ServicePlan]
    findings: list[Finding] = field(default_factory=list)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.all_findings() if f.severity is Severity.ERROR]

    def all_findings(self) -> list[Finding]:
        return [*self.findings, *(f for sp in self.services.values() for f in sp.findings)]
