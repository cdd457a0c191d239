"""Calibration records: what the plan predicted for one replica, beside what its engine then allocated.

When a replica becomes ready the supervisor reads what the engine's startup log states (`engines/startup/`,
`supervisor/calibration.py`) and keeps a record with the plan's prediction and the set-up both belong to
(`StateStore`, in the state dir). `status` shows the last one of each replica; `plan` compares its
prediction with the last record whose set-up is the one it plans, and warns when a figure differs by more
than `TOLERANCE`.

Light on purpose (pydantic and the standard library): `status` reads records without loading the planner.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from servestack.engines.startup import Allocation
    from servestack.plan.model import ServicePlan

TOLERANCE = 0.10  # a figure further than this from the prediction is a finding (`calibration-differs`)


class DeviceFigures(BaseModel):
    """One device's buffers, where the engine states them per device (llama.cpp)."""

    model_config = ConfigDict(frozen=True, from_attributes=True)

    name: str
    weights_bytes: int = 0
    kv_bytes: int = 0


class Figures(BaseModel):
    """The figures calibration compares; None where unknown. Bytes are per GPU (on the CPU: host memory)."""

    model_config = ConfigDict(frozen=True, from_attributes=True)

    kv_tokens: int | None = None
    kv_bytes: int | None = None
    weights_bytes: int | None = None
    devices: tuple[DeviceFigures, ...] = ()


class Setup(BaseModel):
    """What decides what an engine allocates: a record applies to a plan with the same set-up.

    The service's extra engine flags and environment count too, as a digest (they may hold secrets).
    """

    model_config = ConfigDict(frozen=True)

    engine: str
    model: str
    gpus: tuple[int, ...]
    gpu_total_bytes: int | None  # the replica's smallest GPU, as planned (None: none, or not planned)
    tp: int
    context_length: int | None  # as passed to the engine (None: its default)
    memory_fraction: float | None
    dtype: str
    quantization: str | None
    kv_cache_dtype: str
    flags_digest: str


@dataclass(frozen=True)
class Comparison:
    """One figure both sides state."""

    figure: str  # "kv_tokens", "kv_bytes", "weights_bytes"
    predicted: int
    allocated: int

    @property
    def error(self) -> float:
        """How far the allocation is from the prediction, relative to it (+0.12: 12% more)."""
        if self.predicted == 0:
            return 0.0 if self.allocated == 0 else float("inf")
        return (self.allocated - self.predicted) / self.predicted

    @property
    def differs(self) -> bool:
        return abs(self.error) > TOLERANCE

    @property
    def change(self) -> str:
        """The error as people read it: `+12%`, `-3%`, `±0%`."""
        return "±0%" if round(self.error * 100) == 0 else f"{self.error:+.0%}"


class CalibrationRecord(BaseModel):
    """One start of one replica: the plan's prediction, what the engine allocated, and the set-up."""

    model_config = ConfigDict(frozen=True)

    service: str
    replica: int
    time: float  # when the replica became ready (epoch seconds)
    engine_version: str | None  # as the engine's log states it
    setup: Setup
    predicted: Figures
    allocated: Figures
    lines: tuple[str, ...] = ()  # the log lines the allocation was read from

    def compare(self, predicted: Figures | None = None) -> list[Comparison]:
        """The allocation against `predicted` (default: the prediction made at this start), figure by figure."""
        predicted = predicted or self.predicted
        pairs = (
            (name, getattr(predicted, name), getattr(self.allocated, name))
            for name in ("kv_tokens", "kv_bytes", "weights_bytes")
        )
        return [Comparison(name, p, a) for name, p, a in pairs if p is not None and a is not None]


def setup_of(plan: ServicePlan, replica: int) -> Setup:
    """The set-up of one replica of a planned service."""
    service, config = plan.service, plan.config
    flags = json.dumps([service.args, sorted(service.env.items())])
    return Setup(
        engine=service.engine,
        model=config.model,
        gpus=plan.gpus_of(replica),
        gpu_total_bytes=plan.memory.total if plan.memory else None,
        tp=config.tp,
        context_length=config.context_length,
        memory_fraction=config.memory_fraction,
        dtype=service.dtype,
        quantization=service.quantization,
        kv_cache_dtype=service.kv_cache_dtype,
        flags_digest=hashlib.sha256(flags.encode()).hexdigest()[:16],
    )


def predicted_of(plan: ServicePlan) -> Figures:
    """What the plan predicts one replica allocates (on the CPU: the whole model and its KV in host memory)."""
    memory = plan.memory
    if memory is not None:
        return Figures(kv_tokens=plan.kv_tokens, kv_bytes=max(memory.kv, 0), weights_bytes=memory.weights)
    kv = plan.kv_bytes_per_token * plan.kv_tokens if plan.kv_bytes_per_token and plan.kv_tokens else None
    return Figures(kv_tokens=plan.kv_tokens, kv_bytes=kv, weights_bytes=plan.weights_bytes)


def record_of(plan: ServicePlan, replica: int, allocation: Allocation, time: float) -> CalibrationRecord:
    return CalibrationRecord(
        service=plan.name,
        replica=replica,
        time=time,
        engine_version=allocation.version,
        setup=setup_of(plan, replica),
        predicted=predicted_of(plan),
        allocated=Figures.model_validate(allocation),
        lines=allocation.lines,
    )
