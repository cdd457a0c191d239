"""`make_plan`: turn a Stack into a Plan. Pure: everything it needs comes in as arguments."""

from __future__ import annotations

from collections.abc import Mapping

from servestack.gpus import Gpu, Inventory
from servestack.modelinfo import ModelFacts
from servestack.plan.host import HostFacts, host_findings
from servestack.plan.measured import calibrated
from servestack.plan.model import Plan, ServicePlan
from servestack.plan.nodes import matching_nodes, pinned_gpus
from servestack.plan.ports import port_findings
from servestack.plan.residency import make_residency, residency_findings
from servestack.plan.service import ServiceInput, plan_service
from servestack.plan.sharing import sharing_findings
from servestack.stack import Service, Stack


def make_plan(
    stack: Stack,
    inventory: Inventory | None = None,
    facts: Mapping[str, ModelFacts] | None = None,
    *,
    models: Mapping[str, str] | None = None,
    host: HostFacts | None = None,
) -> Plan:
    """Plan every service of `stack` on `inventory` (default: a CPU-only machine).

    `facts` maps a service name to what is known about its model (services missing from it are
    planned without a memory check). `models` maps a service name to its resolved model (a local path
    for package references); services missing from it use the model as written. `host` is what was
    found on the machine the stack runs on (missing paths, busy ports, what engines allocated at their
    last starts); None: nothing was looked at.
    """
    inventory = inventory or Inventory.cpu()
    facts = facts or {}
    models = models or {}
    host = host or HostFacts()
    pinned = {gpu.index for service in stack.services.values() for gpu in _pins(service, inventory)}
    free = [gpu for gpu in inventory.gpus if gpu.index not in pinned]
    services: dict[str, ServicePlan] = {}
    for name, service in stack.services.items():
        missing = host.is_missing(service.model)
        version = host.engine_versions.get(name)
        item = ServiceInput(name, service, models.get(name, service.model), facts.get(name), missing, version)
        planned = calibrated(plan_service(stack, item, inventory, free), host.calibration.get(name, ()))
        taken = set(planned.all_gpus)
        free = [gpu for gpu in free if gpu.index not in taken]
        services[name] = planned
    residency = make_residency(services, inventory)
    findings = [
        *host_findings(stack, host),
        *port_findings(stack),
        *sharing_findings(services, inventory),
        *residency_findings(residency, services, host.memory_bytes),
    ]
    return Plan(stack=stack, services=services, findings=findings, inventory=inventory, residency=residency)


def _pins(service: Service, inventory: Inventory) -> tuple[Gpu, ...]:
    """The GPUs a service pins (on a cluster, on the first node of its `nodes` that has them)."""
    if not service.gpus:
        return ()
    return pinned_gpus(service, matching_nodes(service.nodes or (), inventory), inventory)[0]
