"""A replica's history: what happened to it stays in its state (and reaches a listener) after the fact."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest

from servestack.plan import make_plan
from servestack.settings import Settings
from servestack.supervisor import ReplicaState, ReplicaStatus, StateStore, Supervisor
from servestack.supervisor.state import EVENTS_KEPT, EventKind, ReplicaEvent
from tests.supervisor.fake_stack import stack_with_fake_engine

pytestmark = pytest.mark.anyio


async def wait_until(predicate, timeout: float = 20) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_a_killed_engine_comes_back_and_its_exit_stays_in_the_history(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, restart_backoff=0.05)
    store = StateStore(settings.state_dir)
    heard: list[ReplicaEvent] = []
    async with Supervisor(store, settings, on_event=lambda _, event: heard.append(event)) as supervisor:
        replica = supervisor.prepare(make_plan(stack_with_fake_engine("on-failure", {})).services["flaky"])
        await supervisor.start(replica)
        first_pid = replica.state.pid
        assert replica.state.pgid is not None
        os.killpg(replica.state.pgid, signal.SIGKILL)
        await wait_until(lambda: replica.state.status is ReplicaStatus.READY and replica.state.restarts == 1)
        [state] = store.read_replicas()

    assert state.pid != first_pid
    assert state.last_error is not None and "exited with signal 9, SIGKILL" in state.last_error
    kinds = [e.kind for e in state.events]
    assert kinds == [EventKind.STARTED, EventKind.READY, EventKind.EXITED, EventKind.STARTED, EventKind.READY]
    exit_event, back = state.events[2], state.events[4]
    assert exit_event.signal == "SIGKILL" and exit_event.exit_code is None
    assert exit_event.message == "exited (signal 9, SIGKILL) — restarting in 0.05s"
    assert back.restart == 1 and back.message.startswith("back after restart 1 (ready in ")
    assert heard[: len(state.events)] == state.events


async def test_a_service_started_again_keeps_its_history(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    plan = make_plan(stack_with_fake_engine("on-failure", {})).services["flaky"]
    async with Supervisor(StateStore(settings.state_dir), settings) as supervisor:
        first = supervisor.prepare(plan)
        await supervisor.start(first)
        await supervisor.stop(first)
        again = supervisor.prepare(plan)
        await supervisor.start(again)
    kinds = [e.kind for e in again.state.events]
    assert kinds[:4] == [EventKind.STARTED, EventKind.READY, EventKind.STOPPED, EventKind.STARTED]


def test_the_history_keeps_the_latest_events() -> None:
    state = ReplicaState(service="s", engine="sim", models=["s"], status=ReplicaStatus.READY, log_path="x")
    for n in range(EVENTS_KEPT + 5):
        state = state.with_event(ReplicaEvent(time=n, kind=EventKind.STARTED, message=f"started {n}"))
    assert len(state.events) == EVENTS_KEPT
    assert state.events[-1].message == f"started {EVENTS_KEPT + 4}" and state.events[0].message == "started 5"
