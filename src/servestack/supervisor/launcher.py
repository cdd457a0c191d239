"""Where an engine replica runs, and how each start of it is spawned there: one interface, two homes.

A `Launcher` belongs to one replica. `reserve` gives it a place (this machine: the port and GPUs it
was prepared with; a Ray cluster: a node with room, `cluster/`), `spawn` starts its engine there and
returns an `EngineHandle`, `release` gives the place back. The supervisor starts, watches, restarts,
drains and stops every replica through this interface, so readiness, restarts with backoff, logs and
state are the same wherever an engine runs. `Launchers` makes the launcher of each replica.

An engine's log is always read on this machine (`EngineHandle.log_path`): a launcher that runs
engines elsewhere copies their output there as it comes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from servestack.engines import EngineConfig
from servestack.supervisor.process import NO_MARK, START_READ_LIMIT, EngineProcess

if TYPE_CHECKING:
    from servestack.plan import ServicePlan
    from servestack.runtimes import Launch


@dataclass(frozen=True)
class Place:
    """Where a replica runs now: its engine's config there (the host and port it binds, its GPUs on that
    machine) and the cluster node it is on (None: this machine)."""

    config: EngineConfig
    node: str | None = None  # the node's id
    node_name: str | None = None  # how status names it (a label, else a short id)


class EngineHandle(Protocol):
    """A started engine, wherever it runs.

    `pgid` is its process group on this machine (None: it runs on another node, and nothing here may
    signal it). `lost` says why it is gone without an exit code of its own (its node died); `wait`
    returns when it exited or was lost.
    """

    @property
    def pid(self) -> int: ...

    @property
    def pgid(self) -> int | None: ...

    @property
    def log_path(self) -> Path: ...

    @property
    def returncode(self) -> int | None: ...

    @property
    def lost(self) -> str | None: ...

    async def wait(self) -> int | None: ...

    async def stop(self, timeout: float) -> int | None: ...

    def read_log(self, limit: int = START_READ_LIMIT) -> str: ...


class Launcher(Protocol):
    """One replica's place to run and the starts of its engine there."""

    async def reserve(self, config: EngineConfig) -> Place:
        """A place for the replica prepared with `config` (the same one again while it holds).

        Raises EngineError when there is no room for it.
        """
        ...

    async def spawn(self, launch: Launch, log_path: Path, *, mark: Mapping[str, str] = NO_MARK) -> EngineHandle:
        """Start `launch` at the reserved place; its output goes to `log_path` on this machine."""
        ...

    async def release(self) -> None:
        """Give the place back (its engine is stopped already); the next start reserves again."""
        ...


class Launchers(Protocol):
    """Makes the launcher of each replica."""

    def launcher(self, plan: ServicePlan, index: int) -> Launcher: ...


class LocalLauncher:
    """This machine: the replica runs where it was prepared, each start an `EngineProcess`."""

    async def reserve(self, config: EngineConfig) -> Place:
        return Place(config)

    async def spawn(self, launch: Launch, log_path: Path, *, mark: Mapping[str, str] = NO_MARK) -> EngineProcess:
        return await EngineProcess.spawn(launch, log_path, mark=mark)

    async def release(self) -> None:
        return None


class LocalLaunchers:
    """Every replica on this machine."""

    def launcher(self, plan: ServicePlan, index: int) -> LocalLauncher:
        return LocalLauncher()
