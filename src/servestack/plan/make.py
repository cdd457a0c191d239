"""`make_plan`: turn a Stack into a Plan. Pure: everything it needs comes in as arguments."""

from __future__ import annotations

from collections.abc import Mapping

from servestack.engines import ENGINES, EngineConfig
from servestack.plan.model import Finding, Plan, ServicePlan, Severity
from servestack.stack import Service, Stack


def make_plan(stack: Stack, *, models: Mapping[str, str] | None = None) -> Plan:
    """Plan every service of `stack`.

    `models` maps a service name to its resolved model (a local path for package references);
    services missing from it use the model as written.
    """
    models = models or {}
    services = {
        name: _plan_service(stack, name, service, models.get(name, service.model))
        for name, service in stack.services.items()
    }
    return Plan(stack=stack, services=services)


def _plan_service(stack: Stack, name: str, service: Service, model: str) -> ServicePlan:
    config = EngineConfig(
        model=model,
        served_names=tuple(stack.served_names(name)),
        host=service.host,
        port=service.port,
        gpus=tuple(service.gpus or ()),
        tp=service.tp or 1,
        context_length=service.context_length,
        memory_fraction=service.memory_fraction,
    )
    findings = []
    if service.engine not in ENGINES:
        findings.append(
            Finding(
                Severity.ERROR,
                f"engine {service.engine!r} is not built into this servestack yet",
                service=name,
                fix=f"use one of: {', '.join(sorted(ENGINES))}",
            )
        )
    return ServicePlan(name=name, service=service, config=config, findings=findings)
