"""Calibration at start: once an engine is ready, the supervisor reads what this start of it logged and keeps
what it allocated beside the plan's prediction, in the replica's state and in a history `down` leaves.

The engines here are fakes that print real engines' startup lines (the corpus, tests/plan/corpus) before
serving, started through each engine's own command by the real supervisor; the plans are the corpus replay's.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from planner_accuracy import load_cases, replay
from servestack.engines.startup import Allocation
from servestack.plan import ServicePlan, make_plan
from servestack.plan.calibration import record_of
from servestack.settings import Settings
from servestack.stack import NativeRuntime
from servestack.supervisor import ReplicaStatus, StateStore, Supervisor
from servestack.supervisor.state import CALIBRATIONS_KEPT
from tests.supervisor.fake_stack import FAKE_PYTHON, stack_with_fake_engine

pytestmark = pytest.mark.anyio
GIB, MIB = 2**30, 2**20
CASES = {case.id: case for case in load_cases()}


def replayed(case_id: str, startup_log: Path) -> ServicePlan:
    """The corpus case's plan, its engine replaced by the fake printing `startup_log` (the case's own log)."""
    case = CASES[case_id]
    startup_log.write_text(case.data["log"])
    plan = replay(case).plan
    assert plan is not None
    runtime = NativeRuntime(binary=str(FAKE_PYTHON)) if plan.service.engine == "llama-server" else None
    service = plan.service.model_copy(
        update={
            "runtime": runtime or NativeRuntime(python=str(FAKE_PYTHON)),
            "env": {"FAKE_STARTUP_LOG": str(startup_log)},
        }
    )
    return dataclasses.replace(plan, service=service)


async def wait_until(condition: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


@pytest.mark.parametrize(
    ("case_id", "kv_tokens", "kv_bytes", "weights_bytes"),
    [
        ("003", 178_880, round(8.11 * GIB), None),  # vLLM V1, TP 4
        ("021", 91_056, round(11.12 * GIB), round(14.9595 * GIB)),  # vLLM V0: 5691 blocks of 16
        ("029", 444_372, round(27.12 * GIB) * 2, round(78.81 * GIB - 63.70 * GIB)),  # SGLang, early 2025
        ("009", 49_152, round(3840 * MIB) + round(7488 * MIB), round(15773.70 * MIB)),  # llama-server
        ("034", 2048, 256 * MIB, round(25145.55 * MIB)),  # llama-cpp-python, late 2023
    ],
)
async def test_a_ready_engine_leaves_what_it_allocated_beside_the_plan(
    tmp_path: Path, case_id: str, kv_tokens: int, kv_bytes: int, weights_bytes: int | None
) -> None:
    plan = replayed(case_id, tmp_path / "startup.log")
    settings = Settings(home=tmp_path / "home")
    store = StateStore(settings.state_dir)
    async with Supervisor(store, settings, environ={}) as supervisor:
        await supervisor.start(supervisor.prepare(plan))
        [state] = store.read_replicas()
    record = state.calibration
    assert record is not None and state.status is ReplicaStatus.READY
    assert (record.allocated.kv_tokens, record.allocated.kv_bytes) == (kv_tokens, kv_bytes)
    assert record.allocated.weights_bytes == (pytest.approx(weights_bytes, abs=MIB) if weights_bytes else None)
    assert record.predicted.kv_tokens == plan.kv_tokens and record.predicted.kv_tokens is not None
    assert record.setup.engine == plan.service.engine and record.setup.gpus == plan.gpus
    assert record.lines and all(line in CASES[case_id].data["log"] for line in record.lines)
    store.clear_replicas()  # what `down` does: the history stays
    assert store.read_calibration(plan.name) == [record]


async def test_a_restart_is_measured_from_its_own_lines(tmp_path: Path) -> None:
    """The log holds every start; a restart's record comes from the lines after its own header."""
    startup_log = tmp_path / "startup.log"
    plan = replayed("003", startup_log)
    settings = Settings(home=tmp_path / "home", restart_backoff=0.05)
    store = StateStore(settings.state_dir)
    async with Supervisor(store, settings, environ={}) as supervisor:
        replica = supervisor.prepare(plan)
        await supervisor.start(replica)
        startup_log.write_text("INFO [kv_cache_utils.py:716] GPU KV cache size: 150,000 tokens\n")
        assert replica.state.pgid is not None
        os.killpg(replica.state.pgid, signal.SIGKILL)
        await wait_until(lambda: replica.state.restarts == 1 and replica.state.status is ReplicaStatus.READY)
        [state] = store.read_replicas()
    assert state.calibration is not None
    assert state.calibration.allocated.kv_tokens == 150_000 and state.calibration.allocated.kv_bytes is None
    first, second = store.read_calibration(plan.name)
    assert (first.allocated.kv_tokens, second.allocated.kv_tokens) == (178_880, 150_000)


async def test_an_engine_that_logs_no_figure_leaves_no_record(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    store = StateStore(settings.state_dir)
    plan = make_plan(stack_with_fake_engine("on-failure", {})).services["flaky"]  # llama.cpp that prints nothing
    async with Supervisor(store, settings) as supervisor:
        await supervisor.start(supervisor.prepare(plan))
        [state] = store.read_replicas()
    assert state.status is ReplicaStatus.READY and state.calibration is None
    assert store.read_calibration("flaky") == []


def test_the_history_keeps_the_latest_records(tmp_path: Path) -> None:
    plan = replayed("003", tmp_path / "startup.log")
    store = StateStore(tmp_path / "state")
    for n in range(CALIBRATIONS_KEPT + 3):
        store.append_calibration(record_of(plan, 0, Allocation(kv_tokens=n), time=n))
    kept = store.read_calibration(plan.name)
    assert [r.allocated.kv_tokens for r in kept] == list(range(3, CALIBRATIONS_KEPT + 3))
