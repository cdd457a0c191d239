"""The supervisor: engine processes, readiness, state on disk."""

from servestack.supervisor.leftovers import reap_leftovers
from servestack.supervisor.process import EngineProcess, group_alive, stop_group_blocking, tail_lines
from servestack.supervisor.state import InstanceState, ReplicaState, ReplicaStatus, StateStore, pid_alive
from servestack.supervisor.supervisor import Replica, Supervisor, free_port

__all__ = [
    "EngineProcess",
    "InstanceState",
    "Replica",
    "ReplicaState",
    "ReplicaStatus",
    "StateStore",
    "Supervisor",
    "free_port",
    "group_alive",
    "pid_alive",
    "reap_leftovers",
    "stop_group_blocking",
    "tail_lines",
]
