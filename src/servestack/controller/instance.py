"""Managing an instance from another process: start one in the background, stop one, clean up after it."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from servestack.errors import EngineError, ServestackError
from servestack.settings import Settings
from servestack.supervisor.leftovers import Leftovers, reap_leftovers
from servestack.supervisor.process import tail_lines
from servestack.supervisor.state import InstanceState, ReplicaState, ReplicaStatus, StateStore, pid_alive

POLL_SECONDS = 0.1
OLD_LOGS_KEPT = 3  # servestack.log.1 … .3: the runs before this one
LOG_TAIL_LINES = 20
# How `servestack up` prints an error (cli/app.py `print_error`), to show a background run's own words.
ERROR_PREFIX, QUOTE_PREFIX, FIX_PREFIX = "error: ", "  │ ", "fix: "


@dataclass
class StopReport:
    instance_pid: int | None = None
    leftovers: Leftovers = field(default_factory=Leftovers)


def stop_instance(settings: Settings, *, timeout: float) -> StopReport:
    """SIGTERM the running controller and wait for it to stop its engines; then reap what is left.

    A controller that does not stop within `timeout` is killed; its engines are then stopped here
    (and by its watchdog): the groups the state dir records and every process marked for it.
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
    """Start `servestack up` in the background, in its own session, writing to a fresh `log_path`.

    The previous runs' logs move to `log_path.1` (the last) … `.3`, so what this run prints, and
    a failure shown from its log, is this run's alone.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    rotate(log_path, OLD_LOGS_KEPT)
    with log_path.open("wb") as log:
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
            raise detached_failure(proc.returncode, log_path)
        instance = store.read_instance()
        replicas = store.read_replicas()
        if on_tick:
            on_tick(replicas)
        if instance is not None and instance.pid == proc.pid and _all_ready(replicas):
            return instance
        time.sleep(POLL_SECONDS)
    raise EngineError(f"servestack up was not ready after {timeout:.0f}s", fix=f"log: {log_path}; `servestack down`")


def rotate(path: Path, keep: int) -> None:
    """Shift `path` to `path.1`, `path.1` to `path.2` …, dropping what would go past `path.<keep>`."""
    for n in range(keep - 1, 0, -1):
        older = path.with_name(f"{path.name}.{n}")
        if older.exists():
            older.replace(path.with_name(f"{path.name}.{n + 1}"))
    if path.exists():
        path.replace(path.with_name(f"{path.name}.1"))


def detached_failure(returncode: int | None, log_path: Path) -> ServestackError:
    """The error a background `up` died of, as it printed it (`error:` line, its log lines, `fix:`).

    The log holds this run only (see `rotate`); without an `error:` line (a crash), its last lines.
    """
    lines = tail_lines(log_path, 200)
    errors = [i for i, line in enumerate(lines) if line.startswith(ERROR_PREFIX)]
    if not errors:
        return EngineError(
            f"servestack up exited with code {returncode} while starting",
            fix=f"full log: {log_path}",
            log_tail=lines[-LOG_TAIL_LINES:],
        )
    last = errors[-1]
    after = lines[last + 1 :]
    quoted = [line.removeprefix(QUOTE_PREFIX) for line in after if line.startswith(QUOTE_PREFIX)]
    fixes = [line.removeprefix(FIX_PREFIX) for line in after if line.startswith(FIX_PREFIX)]
    return EngineError(
        lines[last].removeprefix(ERROR_PREFIX),
        fix=f"{fixes[0]}; servestack's own log: {log_path}" if fixes else f"its log: {log_path}",
        log_tail=quoted,
    )


def _all_ready(replicas: list[ReplicaState]) -> bool:
    """Every replica ready, except on-demand ones, which start unloaded."""
    return bool(replicas) and all(
        r.status is ReplicaStatus.READY or (r.on_demand and r.status is ReplicaStatus.UNLOADED) for r in replicas
    )
