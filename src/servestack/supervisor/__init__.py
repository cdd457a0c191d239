"""The supervisor: engine processes, readiness, state on disk.

Names load on first use: `status`, `stop` and `down` read the state dir without importing what
starting engines needs (the planner, the engine adapters, aiohttp).
"""

from typing import TYPE_CHECKING

from servestack.lazy import lazy_attributes

if TYPE_CHECKING:
    from servestack.supervisor.leftovers import reap_leftovers
    from servestack.supervisor.process import EngineProcess, group_alive, tail_lines
    from servestack.supervisor.replica import Replica, free_port
    from servestack.supervisor.state import InstanceState, ReplicaState, ReplicaStatus, StateStore, pid_alive
    from servestack.supervisor.supervisor import Supervisor

_HOMES = {
    "reap_leftovers": "leftovers",
    "EngineProcess": "process",
    "group_alive": "process",
    "tail_lines": "process",
    "InstanceState": "state",
    "ReplicaState": "state",
    "ReplicaStatus": "state",
    "StateStore": "state",
    "pid_alive": "state",
    "Replica": "replica",
    "Supervisor": "supervisor",
    "free_port": "replica",
}

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
    "tail_lines",
]

__getattr__ = lazy_attributes(__name__, _HOMES)
