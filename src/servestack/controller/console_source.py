"""The running instance as the web console sees it (`gateway/console/source.py`'s seam).

Everything comes from where the CLI gets it: the supervisor's replica records (what `status` reads
from the state dir), the on-demand snapshot (`ps`), the plan (`plan --json`, `plan --explore-tp`), the
engines' log files (`logs`), and the control socket's verbs (`start`, `stop`, `restart`, `load`,
`unload`). Text that may hold a secret passes through the instance's `Redactor` first.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from servestack.controller.console_logs import choose_logs, follow_logs
from servestack.controller.control import ServiceSteering, error_payload, steering
from servestack.controller.redact import Redactor
from servestack.errors import EngineError, ServestackError, StateError
from servestack.gateway.console import LogLine
from servestack.gpus import read_nvml_inventory
from servestack.plan import ServicePlan, explore_service
from servestack.plan.export import explore_to_dict, plan_to_dict
from servestack.supervisor.state import UNLOADED_STATUSES, ReplicaState, replica_label

if TYPE_CHECKING:
    from servestack.plan import Plan
    from servestack.settings import Settings
    from servestack.supervisor import InstanceState, Replica


EVENTS_SHOWN = 5  # per replica: its latest events
NVML_EVERY = 2.0  # seconds between NVML reads, whoever asks


class ConsoleHost(ServiceSteering, Protocol):
    """What the console reads of the running instance (the controller), besides what it steers."""

    plan: Plan
    settings: Settings
    environ: Mapping[str, str] | None
    instance: InstanceState | None

    @property
    def running(self) -> bool: ...

    def replicas(self) -> list[Replica]: ...


class ControllerConsole:
    def __init__(self, controller: ConsoleHost, *, clock: Callable[[], float] = time.time) -> None:
        self.controller = controller
        self.clock = clock
        plan = controller.plan
        self.redact = Redactor.of(
            [sp.service.api_key for sp in plan.services.values()]
            + [controller.settings.admin_key.get_secret_value() if controller.settings.admin_key else None],
            controller.environ if controller.environ is not None else os.environ,
            *(sp.service.env for sp in plan.services.values()),
        )
        self._plan = plan_to_dict(plan)
        self._gpu_used: tuple[float, dict[int, int] | None] = (-NVML_EVERY, None)

    def service_names(self) -> list[str]:
        return list(self.controller.plan.services)

    async def overview(self) -> dict[str, Any]:
        used = await self._nvml_used()
        now = self.clock()
        states = [r.state for r in self.controller.replicas()]
        on_demand = {str(row["service"]): row for row in self.controller.on_demand_snapshot()}
        instance = self.controller.instance
        return {
            "time": now,
            "instance": instance.model_dump(mode="json") if instance is not None else None,
            "gpu_source": self.controller.plan.inventory.source,
            "gpus": self._gpus(states, used),
            "services": [
                {
                    "name": name,
                    "engine": sp.service.engine,
                    "load": sp.service.load,
                    "models": sp.config.served_names,
                    "on_demand": on_demand.get(name),
                    "replicas": [
                        self._replica(s, now) for s in sorted(states, key=lambda s: s.replica) if s.service == name
                    ],
                }
                for name, sp in self.controller.plan.services.items()
            ],
        }

    def plan(self) -> dict[str, Any]:
        return self._plan

    def explore_tp(self, service: str) -> dict[str, Any]:
        plan = self.controller.plan
        sp = plan.services.get(service)
        if sp is None:
            raise StateError(f"no service {service!r} in the running stack")
        return explore_to_dict(service, explore_service(service, sp.service, sp.facts, plan.inventory))

    def log_lines(self, service: str, replica: int | None, lines: int) -> AsyncIterator[list[LogLine]]:
        chosen = choose_logs(self.controller.replicas(), service, replica)
        return follow_logs(chosen, lines, self.redact, lambda: self.controller.running)

    async def act(self, service: str, action: str) -> dict[str, Any]:
        handler = steering(self.controller, action)
        if handler is None:
            return {"ok": False, "error": f"unknown action {action!r}"}
        try:
            await handler(service)
        except ServestackError as error:
            tail = error.log_tail if isinstance(error, EngineError) else []
            masked = {
                "error": self.redact(error.message),
                "fix": self.redact(error.fix) if error.fix else None,
                "log_tail": self.redact.lines(tail),
            }
            return {**error_payload(error), **masked, "ok": False}
        return {"ok": True}

    def _replica(self, state: ReplicaState, now: float) -> dict[str, Any]:
        """`status --json`'s record of one replica, fit for a page: no command line, secrets masked."""
        record = state.model_dump(
            mode="json", exclude={"boot_id", "command", "pgid", "log_path", "events", "calibration", "last_error"}
        )
        failure = next((e for e in reversed(state.events) if e.log_tail), None)
        why = state.why_not_ready()
        record.update(
            label=state.label,
            state=state.load_state or state.status.value,
            uptime_seconds=state.uptime(now),
            why_not_ready=self.redact(why) if why else None,
            last_error=self.redact(state.last_error) if state.last_error else None,
            last_failure=None
            if failure is None
            else {
                "time": failure.time,
                "message": self.redact(failure.message),
                "log_tail": self.redact.lines(failure.log_tail),
            },
            events=[
                {"time": e.time, "kind": e.kind.value, "message": self.redact(e.message)}
                for e in state.events[-EVENTS_SHOWN:]
            ],
        )
        return record

    def _gpus(self, states: list[ReplicaState], used: dict[int, int] | None) -> list[dict[str, Any]]:
        """Each GPU of the plan: every replica's part of it by the plan, held now or not; NVML's used bytes."""
        holding = {(s.service, s.replica) for s in states if s.status not in UNLOADED_STATUSES}
        gpus = []
        for gpu in self.controller.plan.inventory.gpus:
            parts = [
                _part(sp, i, gpu.total_bytes, held=(sp.name, i) in holding)
                for sp in self.controller.plan.services.values()
                for i in range(sp.service.replicas)
                if gpu.index in sp.gpus_of(i)
            ]
            gpus.append(
                {
                    "index": gpu.index,
                    "name": gpu.name,
                    "total_bytes": gpu.total_bytes,
                    "used_bytes": used.get(gpu.index) if used is not None else None,
                    "parts": parts,
                }
            )
        return gpus

    async def _nvml_used(self) -> dict[int, int] | None:
        """Used bytes per GPU by NVML, when the plan's GPUs are this machine's (read at most every NVML_EVERY s)."""
        if self.controller.plan.inventory.source != "nvml":
            return None
        read_at, used = self._gpu_used
        if time.monotonic() - read_at >= NVML_EVERY:
            inventory = await asyncio.to_thread(read_nvml_inventory)
            used = None if inventory is None else {g.index: g.total_bytes - (g.free_bytes or 0) for g in inventory.gpus}
            self._gpu_used = (time.monotonic(), used)
        return used


def _part(sp: ServicePlan, replica: int, total: int, *, held: bool) -> dict[str, Any]:
    """One replica's claim of one GPU: weights, KV cache and overhead by its memory rule, or (an engine the
    planner cannot size, such as the simulator) its memory fraction of the GPU."""
    memory = sp.memory
    part: dict[str, Any] = {
        "service": sp.name,
        "label": replica_label(sp.name, replica),
        "on_demand": sp.service.on_demand,
        "held": held,
    }
    if memory is not None:
        part.update(weights_bytes=memory.weights, kv_bytes=max(memory.kv, 0), overhead_bytes=memory.overhead)
    else:
        part.update(claim_bytes=round((sp.config.memory_fraction or 0.0) * total))
    return part
