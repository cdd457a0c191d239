"""Engines die with their controller: the watchdog, and `down` finding engines the state dir never recorded."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from servestack.supervisor import StateStore, pid_alive, reap_leftovers
from servestack.supervisor.lineage import Mark, marked_processes

SLEEPER = "import time; time.sleep(600)"
# An engine with a worker in its process group; the worker ignores SIGTERM, as a busy one would.
ENGINE_WITH_WORKER = """
import subprocess, sys, time
worker = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"
print(subprocess.Popen([sys.executable, "-c", worker]).pid, flush=True)
time.sleep(600)
"""
# A controller that starts its watchdog, then an engine it records nowhere, then is killed.
CONTROLLER = f"""
import os, subprocess, sys, time
from pathlib import Path
from servestack.supervisor.lineage import Mark
from servestack.supervisor.watchdog import Watchdog
state_dir = Path(sys.argv[1])
mark = Mark.of(state_dir)
Watchdog(mark, 0.5, state_dir / "watchdog.log").ensure_started()
engine = subprocess.Popen(
    [sys.executable, "-c", {ENGINE_WITH_WORKER!r}],
    env={{**os.environ, **mark.env}}, stdout=subprocess.PIPE, text=True, start_new_session=True,
)
print(engine.pid, engine.stdout.readline().strip(), flush=True)
time.sleep(600)
"""


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test starts; whatever is left of them is killed afterwards."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def spawn_marked(mark: Mark, started: list[subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-c", SLEEPER], env={**os.environ, **mark.env}, start_new_session=True)
    started.append(proc)
    return proc


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def wait_gone(pids: list[int], timeout: float = 15) -> list[int]:
    deadline = time.monotonic() + timeout
    while any(pid_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [p for p in pids if pid_alive(p)]


def test_a_marked_process_is_found_by_its_state_dir(tmp_path: Path, started: list[subprocess.Popen[bytes]]) -> None:
    mark = Mark.of(tmp_path / "state")
    proc = spawn_marked(mark, started)
    deadline = time.monotonic() + 10
    while not (found := [p for p in marked_processes(tmp_path / "state") if p.pid == proc.pid]):
        assert time.monotonic() < deadline
        time.sleep(0.02)  # the mark shows once the child has exec'd
    assert found[0].mark == mark and found[0].pgid == proc.pid
    assert not [p for p in marked_processes(tmp_path / "other") if p.pid == proc.pid]


def test_down_reaps_an_engine_the_state_dir_never_recorded(
    tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    store = StateStore(tmp_path / "state")
    orphan = spawn_marked(Mark.of(store.root, owner=dead_pid()), started)
    elsewhere = spawn_marked(Mark.of(tmp_path / "other-state", owner=dead_pid()), started)
    still_owned = spawn_marked(Mark.of(store.root), started)  # its controller (this process) runs
    time.sleep(0.5)  # all three have exec'd

    leftovers = reap_leftovers(store, timeout=5)

    assert leftovers.recorded == [] and leftovers.unrecorded == [orphan.pid]
    assert orphan.wait(timeout=10) == -signal.SIGTERM
    assert elsewhere.poll() is None and still_owned.poll() is None


def test_the_watchdog_stops_engines_and_their_workers_when_the_controller_is_killed(tmp_path: Path) -> None:
    controller = subprocess.Popen([sys.executable, "-c", CONTROLLER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert controller.stdout is not None
        engine, worker = (int(x) for x in controller.stdout.readline().split())
        assert pid_alive(engine) and pid_alive(worker)
        controller.send_signal(signal.SIGKILL)
        controller.wait()
        assert wait_gone([engine, worker]) == []  # the worker ignored SIGTERM: it took the SIGKILL
        assert "left by controller" in (tmp_path / "watchdog.log").read_text()
    finally:
        if controller.poll() is None:
            controller.kill()
            controller.wait()
        for group in {p.pgid for p in marked_processes(tmp_path)}:
            os.killpg(group, signal.SIGKILL)
