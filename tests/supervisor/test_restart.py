"""Restart policy: backoff, give-up on a crash loop, and policies that keep an engine down."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from servestack.plan import make_plan
from servestack.settings import Settings
from servestack.supervisor import ReplicaStatus, StateStore, Supervisor
from servestack.supervisor.restart import Backoff, RestartTracker
from servestack.supervisor.state import EventKind
from tests.supervisor.fake_stack import stack_with_fake_engine


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_backoff_doubles_up_to_the_cap() -> None:
    clock = Clock()
    tracker = RestartTracker("on-failure", Backoff(base=1, cap=5, crash_limit=100, crash_window=60), clock)
    delays = []
    for _ in range(5):
        delays.append(tracker.on_exit(1))
        clock.now += 1
    assert delays == [1, 2, 4, 5, 5]


def test_crash_loop_gives_up_and_old_failures_age_out() -> None:
    clock = Clock()
    tracker = RestartTracker("always", Backoff(base=1, cap=1, crash_limit=3, crash_window=60), clock)
    assert tracker.on_exit(1) == 1
    clock.now = 100  # the first failure leaves the window
    assert tracker.on_exit(1) == 1
    assert tracker.on_exit(1) == 1
    assert tracker.on_exit(0) is None
    assert tracker.gave_up is not None and "3 failures within 1 min" in tracker.gave_up


@pytest.mark.parametrize(
    ("policy", "code", "restarts"),
    [("never", 1, False), ("on-failure", 0, False), ("on-failure", 1, True), ("always", 0, True)],
)
def test_policy_decides_whether_to_restart(policy: str, code: int, restarts: bool) -> None:
    tracker = RestartTracker(policy, Backoff(), Clock())  # type: ignore[arg-type]
    assert (tracker.on_exit(code) is not None) is restarts


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_dead_engine_is_restarted_then_a_crash_loop_gives_up(tmp_path: Path) -> None:
    stack = stack_with_fake_engine("on-failure", {"FAKE_EXIT_AFTER": "0.3"})
    settings = Settings(home=tmp_path, restart_backoff=0.05, restart_backoff_max=0.1, crash_loop_failures=3)
    store = StateStore(settings.state_dir)
    seen: list[ReplicaStatus] = []
    async with Supervisor(store, settings, listener=lambda r: seen.append(r.state.status)) as supervisor:
        replica = supervisor.prepare(make_plan(stack).services["flaky"])
        await supervisor.start(replica)
        assert replica.watcher is not None
        await asyncio.wait_for(replica.watcher, timeout=30)
    [state] = store.read_replicas()
    assert state.status is ReplicaStatus.FAILED
    assert state.restarts == 2
    assert state.last_error and state.last_error.startswith("crash loop: 3 failures")
    assert "fake engine: dying" in state.last_error
    assert seen.count(ReplicaStatus.READY) == 3 and ReplicaStatus.RESTARTING in seen
    exits = [e.message for e in state.events if e.kind is EventKind.EXITED]
    assert exits[:2] == ["exited (code 1) — restarting in 0.05s", "exited (code 1) — restarting in 0.1s"]
    assert exits[2].startswith("exited (code 1) — gave up: crash loop: 3 failures")


@pytest.mark.anyio
async def test_clean_exit_with_on_failure_is_reported_as_exited_not_failed(tmp_path: Path) -> None:
    stack = stack_with_fake_engine("on-failure", {"FAKE_EXIT_AFTER": "0.2", "FAKE_EXIT_CODE": "0"})
    settings = Settings(home=tmp_path, restart_backoff=0.05)
    store = StateStore(settings.state_dir)
    async with Supervisor(store, settings) as supervisor:
        replica = supervisor.prepare(make_plan(stack).services["flaky"])
        await supervisor.start(replica)
        assert replica.watcher is not None
        await asyncio.wait_for(replica.watcher, timeout=30)
    [state] = store.read_replicas()
    assert state.status is ReplicaStatus.EXITED and state.restarts == 0
    assert state.last_error is None  # an exit to report, not an error
    last = state.events[-1]
    assert last.kind is EventKind.EXITED and last.exit_code == 0 and last.signal is None
    assert last.message == "exited (code 0) — not restarted (restart: on-failure)"
    assert "fake engine: dying" in last.log_tail
