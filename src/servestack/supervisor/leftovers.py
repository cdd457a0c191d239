"""Cleaning up after a controller that could not stop its engines (killed with SIGKILL, a crash)."""

from __future__ import annotations

from dataclasses import dataclass, field

from servestack.supervisor.lineage import orphaned_groups, stop_groups
from servestack.supervisor.process import group_alive
from servestack.supervisor.state import ReplicaState, StateStore, current_boot_id


@dataclass
class Leftovers:
    """What a dead controller left running: engines its state dir records, and process groups it does not."""

    recorded: list[ReplicaState] = field(default_factory=list)
    unrecorded: list[int] = field(default_factory=list)


def reap_leftovers(store: StateStore, timeout: float) -> Leftovers:
    """Stop every engine a dead controller of this state dir left behind.

    Two sources: the process groups the state dir records, and every process still marked for this
    state dir whose controller is gone (`lineage.py`), which finds engines started but not yet recorded.
    """
    boot_id = current_boot_id()
    recorded = [r for r in store.read_replicas() if r.pgid and r.boot_id == boot_id and group_alive(r.pgid)]
    recorded_groups = {r.pgid for r in recorded if r.pgid}
    unrecorded = orphaned_groups(store.root) - recorded_groups
    stop_groups(recorded_groups | unrecorded, timeout)
    store.clear_replicas()
    return Leftovers(recorded, sorted(unrecorded))
