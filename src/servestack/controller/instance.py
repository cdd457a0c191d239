"""Talking to a running instance from another process: stop it, clean up after it."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field

from servestack.settings import Settings
from servestack.supervisor import ReplicaState, StateStore, pid_alive, reap_leftovers

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
