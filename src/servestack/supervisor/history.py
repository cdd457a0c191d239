"""A replica's history as events: how a start, a readiness, an exit and a stop are told.

The supervisor records each event in the replica's state (so `status` shows it later) and hands
it to whoever follows the replicas (the foreground `up` prints it). The wording lives here, once.
"""

from __future__ import annotations

import signal
import time

from servestack.supervisor.state import EventKind, ReplicaEvent

EXIT_TAIL_LINES = 5


def describe_exit(returncode: int | None) -> tuple[str, int | None, str | None]:
    """How a process ended: ("code 1" or "signal 9, SIGKILL", exit code, signal name)."""
    if returncode is None:
        return "unknown cause", None, None
    if returncode < 0:
        number = -returncode
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"SIG{number}"
        return f"signal {number}, {name}", None, name
    return f"code {returncode}", returncode, None


def started(pid: int, restart: int, node: str | None = None) -> ReplicaEvent:
    message = f"started (pid {pid} on node {node})" if node else f"started (pid {pid})"
    return ReplicaEvent(time=time.time(), kind=EventKind.STARTED, message=message, restart=restart)


def ready(seconds: float, restart: int) -> ReplicaEvent:
    message = f"ready in {seconds:.1f}s" if restart == 0 else f"back after restart {restart} (ready in {seconds:.1f}s)"
    return ReplicaEvent(time=time.time(), kind=EventKind.READY, message=message, restart=restart)


def exited(returncode: int | None, outcome: str, restart: int, log_tail: list[str]) -> ReplicaEvent:
    """A ready process ended; `outcome` says what happens next ("restarting in 1s")."""
    cause, code, name = describe_exit(returncode)
    return ReplicaEvent(
        time=time.time(),
        kind=EventKind.EXITED,
        message=f"exited ({cause}) — {outcome}",
        restart=restart,
        exit_code=code,
        signal=name,
        log_tail=log_tail,
    )


def lost(why: str, outcome: str, restart: int) -> ReplicaEvent:
    """A ready engine gone without an exit code of its own (`why`: its node died); `outcome` says what follows."""
    return ReplicaEvent(time=time.time(), kind=EventKind.LOST, message=f"lost: {why} — {outcome}", restart=restart)


def start_failed(error: str, outcome: str | None, restart: int, log_tail: list[str]) -> ReplicaEvent:
    """A start that never got ready (the engine exited, reported a failure, or timed out)."""
    return ReplicaEvent(
        time=time.time(),
        kind=EventKind.START_FAILED,
        message=f"failed to start: {error}" + (f" — {outcome}" if outcome else ""),
        restart=restart,
        log_tail=log_tail,
    )


def stopped() -> ReplicaEvent:
    return ReplicaEvent(time=time.time(), kind=EventKind.STOPPED, message="stopped")


def unloaded(why: str, *, asleep: bool = False) -> ReplicaEvent:
    """`unloaded (idle for 5m)`; asleep: `asleep (evicted for chat): GPU memory released`."""
    message = f"asleep ({why}): GPU memory released" if asleep else f"unloaded ({why})"
    return ReplicaEvent(time=time.time(), kind=EventKind.UNLOADED, message=message)


def woke(seconds: float) -> ReplicaEvent:
    return ReplicaEvent(time=time.time(), kind=EventKind.WOKE, message=f"woke in {seconds:.1f}s")
