"""Which processes belong to an instance, including the ones its state dir never heard of.

Every process the supervisor starts (engines and their `--version`/`--help` probes) carries one
environment variable naming the instance's state dir and its controller's pid. Children inherit
it (tensor-parallel workers too) and /proc/<pid>/environ keeps showing it for the process's whole
life, so a scan finds every engine an instance started — also one spawned a moment before its
controller was killed, before its record was written.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from servestack.supervisor.process import GROUP_POLL_SECONDS, group_alive, signal_group
from servestack.supervisor.state import pid_alive

MARK_VARIABLE = "SERVESTACK_ENGINE_OF"
_MARK_PREFIX = f"{MARK_VARIABLE}=".encode()


@dataclass(frozen=True)
class Mark:
    """The controller (`owner` pid) and state dir a process was started for."""

    owner: int
    state_dir: str

    @classmethod
    def of(cls, state_dir: Path, owner: int | None = None) -> Mark:
        return cls(owner=os.getpid() if owner is None else owner, state_dir=str(state_dir.resolve()))

    @property
    def env_value(self) -> str:
        return f"{self.owner}:{self.state_dir}"

    @property
    def env(self) -> dict[str, str]:
        return {MARK_VARIABLE: self.env_value}

    @classmethod
    def parse(cls, value: str) -> Mark | None:
        owner, sep, state_dir = value.partition(":")
        return cls(int(owner), state_dir) if sep and owner.isdigit() else None


@dataclass(frozen=True)
class MarkedProcess:
    pid: int
    pgid: int
    mark: Mark


def marked_processes(state_dir: Path) -> list[MarkedProcess]:
    """Every live process of this user marked for `state_dir`, whichever controller started it."""
    wanted = str(state_dir.resolve())
    found = []
    for pid in _pids():
        mark = _read_mark(pid)
        if mark is None or mark.state_dir != wanted:
            continue
        try:
            found.append(MarkedProcess(pid, os.getpgid(pid), mark))
        except ProcessLookupError:
            continue
    return found


def orphaned_groups(state_dir: Path) -> set[int]:
    """Process groups holding a process of `state_dir` whose controller is gone."""
    own = os.getpgrp()
    return {p.pgid for p in marked_processes(state_dir) if not pid_alive(p.mark.owner) and p.pgid != own}


def groups_of(mark: Mark) -> set[int]:
    """Process groups holding a process started by the controller `mark` names."""
    own = os.getpgrp()
    return {p.pgid for p in marked_processes(Path(mark.state_dir)) if p.mark == mark and p.pgid != own}


def stop_groups(pgids: Iterable[int], timeout: float) -> None:
    """SIGTERM every group, give them `timeout` together, then SIGKILL what is left."""
    groups = set(pgids)
    for pgid in groups:
        signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while any(group_alive(g) for g in groups) and time.monotonic() < deadline:
        time.sleep(GROUP_POLL_SECONDS)
    for pgid in groups:
        signal_group(pgid, signal.SIGKILL)


def _pids() -> list[int]:
    try:
        return [int(name) for name in os.listdir("/proc") if name.isdigit()]
    except FileNotFoundError:  # no /proc (not Linux): nothing to find this way
        return []


def _read_mark(pid: int) -> Mark | None:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:  # gone, or another user's process
        return None
    if _MARK_PREFIX not in environ:
        return None
    for entry in environ.split(b"\0"):
        if entry.startswith(_MARK_PREFIX):
            return Mark.parse(entry[len(_MARK_PREFIX) :].decode(errors="replace"))
    return None
