"""Cleaning up after a controller that could not stop its engines (killed with SIGKILL, a crash)."""

from __future__ import annotations

from servestack.supervisor.process import group_alive, stop_group_blocking
from servestack.supervisor.state import ReplicaState, StateStore, current_boot_id


def reap_leftovers(store: StateStore, timeout: float) -> list[ReplicaState]:
    """Stop every engine group the state dir still records; return the replicas that were stopped."""
    stopped = []
    boot_id = current_boot_id()
    for replica in store.read_replicas():
        if replica.pgid is not None and replica.boot_id == boot_id and group_alive(replica.pgid):
            stop_group_blocking(replica.pgid, timeout)
            stopped.append(replica)
    store.clear_replicas()
    return stopped
