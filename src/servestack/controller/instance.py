"""Managing an instance from another process: start one in the background, stop one, clean up after it."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from servestack.errors import EngineError
from servestack.settings import Settings
from servestack.supervisor import (
    InstanceState,
    ReplicaState,
    ReplicaStatus,
    StateStore,
    pid_alive,
    reap_leftovers,
    tail_lines,
)

POLL_SECONDS = 0.1


@dataclass
class StopReport:
    instance_pid: int | None = None
    leftovers: list[ReplicaState] = field(default_factory=list)


def stop_instance(settings: Settings, *, timeout: float) -> StopReport:
    """SIGTERM the running controller and wait for it to stop its engines; then reap what is left.

    A controller that does not stop within `timeout` is killed; its engines are then stopped
    through the process groups recorded in the state dir.
    """
    store = StateStore(settings.state_dir)
    report = StopReport()
    instance = store.read_instance()
    if instance is not None and pid_alive(instance.pid):
        report.instance_pid = instance.pid
        os.kill(instance.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while pid_alive(instance.pid) and time.monotonic() < deadline:
            time.sleep(POLL_SECONDS)
        if pid_alive(instance.pid):
            os.kill(instance.pid, signal.SIGKILL)
    store.clear_instance()
    report.leftovers = reap_leftovers(store, settings.stop_timeout)
    return report


def launch_detached(argv: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start `servestack up` in the background, in its own session, writing to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )


def wait_detached(
    settings: Settings,
    proc: subprocess.Popen[bytes],
    *,
    log_path: Path,
    timeout: float,
    on_tick: Callable[[list[ReplicaState]], None] | None = None,
) -> InstanceState:
    """Block until the detached instance has every service ready; raise with its log if it dies."""
    store = StateStore(settings.state_dir)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise EngineError(
                f"servestack up exited with code {proc.returncode} while starting",
                fix=f"full log: {log_path}",
                log_tail=tail_lines(log_path, 20),
            )
        instance = store.read_instance()
        replicas = store.read_replicas()
        if on_tick:
            on_tick(replicas)
        if instance is not None and instance.pid == proc.pid and _all_ready(replicas):
            return instance
        time.sleep(POLL_SECONDS)
    raise EngineError(f"servestack up was not ready after {timeout:.0f}s", fix=f"log: {log_path}; `servestack down`")


def _all_ready(replicas: list[ReplicaState]) -> bool:
    return bool(replicas) and all(r.status is ReplicaStatus.READY for r in replicas)
