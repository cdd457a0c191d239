"""What a plan is: per service the engine configuration decided, the memory it will take per GPU, and
findings that explain it."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

from servestack.engines import EngineConfig
from servestack.engines.memory import GpuMemory
from servestack.gpus import Inventory
from servestack.modelinfo import ModelFacts
from servestack.plan.calibration import CalibrationRecord

if TYPE_CHECKING:
    from servestack.plan.residency import Residency
from servestack.stack import KeyPath, Service, Stack

__all__ = [
    "Decision",
    "Finding",
    "GpuMemory",
    "Plan",
    "ReplicaPlace",
    "ServicePlan",
    "Severity",
    "Verdict",
    "setting_key",
]


class Severity(Enum):
    ERROR = "error"  # blocks `up` (unless --force)
    WARNING = "warning"


class Verdict(Enum):
    FITS = "fits"
    DOES_NOT_FIT = "does-not-fit"  # valid, but weights + KV + overhead exceed the GPUs
    INVALID = "invalid"  # the TP size or the placement cannot work at all
    CPU = "cpu"  # runs on the CPU: no GPU memory to check
    UNCHECKED = "unchecked"  # the model's facts are unknown


@dataclass(frozen=True)
class Finding:
    """One thing the planner found: what, why, and what to do about it.

    `code` is a stable identifier (`tp-invalid`, `gpu-over-committed`, …) listed in docs/plan.md.
    `key` is the stack setting it is about (`("services", "chat", "tp")`), which the CLI shows as
    `stack.yaml:9: services.chat.tp`; empty when it is about no one setting.
    """

    severity: Severity
    message: str
    service: str | None = None
    reason: str = ""
    fix: str = ""
    code: str = ""
    key: KeyPath = ()


def setting_key(name: str, service: Service, *settings: str) -> KeyPath:
    """The key of the first of `settings` that the stack sets for service `name`, else of the service."""
    chosen = next((setting for setting in settings if setting in service.model_fields_set), None)
    return ("services", name, chosen) if chosen else ("services", name)


@dataclass(frozen=True)
class Decision:
    """A setting the user left out and the planner chose, with the engine flag it becomes."""

    setting: str  # the stack key: tp, gpus, context_length, memory_fraction
    value: object
    flag: str  # e.g. "--tp-size 4"
    reason: str


@dataclass(frozen=True)
class ReplicaPlace:
    """Where one replica runs on a cluster: its node (None: any node with room for it) and its GPUs' indices
    on that node."""

    node: str | None
    gpus: tuple[int, ...] = ()


@dataclass(frozen=True)
class ServicePlan:
    name: str
    service: Service
    config: EngineConfig
    findings: list[Finding] = field(default_factory=list)
    verdict: Verdict = Verdict.UNCHECKED
    facts: ModelFacts | None = None
    memory: GpuMemory | None = None
    weights_bytes: int | None = None  # the whole model as loaded
    kv_bytes_per_token: int | None = None  # per GPU
    kv_tokens: int | None = None  # KV-cache capacity in tokens (per replica)
    full_context_sequences: int | None = None  # how many sequences of `config.context_length` fit at once
    decisions: list[Decision] = field(default_factory=list)
    # One GPU block per replica when replicas were placed on GPUs of their own; empty: all share config.gpus.
    # GPUs are named by their inventory index (unique across a cluster's nodes).
    replica_gpus: tuple[tuple[int, ...], ...] = ()
    nodes: tuple[str, ...] = ()  # on a cluster: the ids of the nodes it may run on (`nodes:`); empty: any
    places: tuple[ReplicaPlace, ...] = ()  # on a cluster: one per replica; empty: this machine
    calibration: CalibrationRecord | None = None  # the last start here with this set-up (`plan/measured.py`)

    @property
    def gpus(self) -> tuple[int, ...]:
        return self.config.gpus

    @property
    def all_gpus(self) -> tuple[int, ...]:
        """Every GPU any replica of this service uses."""
        return tuple(g for block in self.replica_gpus for g in block) if self.replica_gpus else self.config.gpus

    def gpus_of(self, replica: int) -> tuple[int, ...]:
        """The GPUs of one replica, as its engine sees them (CUDA_VISIBLE_DEVICES where it runs)."""
        if self.places:
            return self.places[replica].gpus
        return self.replica_gpus[replica] if self.replica_gpus else self.config.gpus

    @property
    def tp(self) -> int:
        return self.config.tp

    @property
    def context_window(self) -> int | None:
        """The context in tokens the engine runs with: the one set or reduced to fit, else the one the
        planner decided the engine defaults to; None when unknown."""
        if self.config.context_length is not None:
            return self.config.context_length
        decided = [d.value for d in self.decisions if d.setting == "context_length" and isinstance(d.value, int)]
        return decided[-1] if decided else None


@dataclass(frozen=True)
class Plan:
    stack: Stack
    services: dict[str, ServicePlan]
    findings: list[Finding] = field(default_factory=list)
    inventory: Inventory = field(default_factory=Inventory.cpu)
    residency: Residency | None = None  # which on-demand services can be loaded together (residency.py)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.all_findings() if f.severity is Severity.ERROR]

    def all_findings(self) -> list[Finding]:
        return [*self.findings, *(f for sp in self.services.values() for f in sp.findings)]
