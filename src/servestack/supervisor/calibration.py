"""Calibration at each start: what the engine's own log says it allocated, beside what the plan predicted.

Once a replica is ready, the lines of this start (`EngineHandle.read_log`) go to the engine's reader
(`engines/startup/`); what they state becomes a record (`plan/calibration.py`) that the supervisor keeps
in the replica's state (for `status`) and in the state dir's calibration history (for `plan`; `down`
leaves it).
"""

from __future__ import annotations

import time

from servestack.engines import Engine
from servestack.engines.startup import Silent
from servestack.plan import ServicePlan
from servestack.plan.calibration import CalibrationRecord, record_of
from servestack.supervisor.launcher import EngineHandle


def measure(engine: Engine, plan: ServicePlan, replica: int, process: EngineHandle) -> CalibrationRecord | None:
    """The record of this start of `replica`; None when its engine's log states no figure (or it has no reader)."""
    reader = engine.startup_log
    if isinstance(reader, Silent):
        return None
    allocation = reader.parse(process.read_log())
    return record_of(plan, replica, allocation, time.time()) if allocation.stated else None
