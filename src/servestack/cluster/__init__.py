"""Ray: a stack's engines placed on a cluster's nodes (`cluster:` in the stack, `servestack[ray]`).

The inventory of the live nodes for the planner, a placement group and a launcher actor per replica,
engines started on their node as OS processes that die with their launcher, and a node's death seen as
its replicas lost (the supervisor places them again). Names load on first use: nothing here imports Ray
until a stack names a cluster.
"""

from typing import TYPE_CHECKING

from servestack.lazy import lazy_attributes

if TYPE_CHECKING:
    from servestack.cluster.connection import RayCluster
    from servestack.cluster.launcher import RayLaunchers

_HOMES = {"RayCluster": "connection", "RayLaunchers": "launcher"}

__all__ = ["RayCluster", "RayLaunchers"]

__getattr__ = lazy_attributes(__name__, _HOMES)
