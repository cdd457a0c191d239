"""What runs on a cluster node: the launcher actor of one replica, and the GPU probe `plan` sends to each node.

`NodeLauncher` is the body of a Ray actor (made remote by `launcher.py`, inside the replica's placement
group with the replica's GPUs). It starts the engine as an OS process in its own session, with the
supervisor's `EngineProcess` (so it is stopped the same way, process group and all), writes its output
to a file on the node that the driver reads back, and makes sure the engine never outlives it — Ray
kills an actor's worker process when the node, the driver or the actor goes, but not the worker's
children:

- a watchdog process (the supervisor's, `watchdog.py`) holds a pipe only this actor writes to; when the
  actor's process ends, for any reason, the pipe closes and the watchdog stops every process carrying
  this actor's mark (`lineage.py`);
- the actor watches its own parent, the node's raylet: when the raylet dies the node counts as dead to
  the cluster, so the actor exits at once, and its watchdog stops the engine;
- the port it gives its engine is claimed (a file naming the launcher, under the node's directory) from
  the moment it is chosen: launchers choose at the same moment, and an engine binds its port only later;
- when a launcher starts, it first reaps the engines of launchers on this node that are dead already
  (their mark names a dead owner): what a launcher and its watchdog killed together left behind.

Engines get the worker's environment without Ray's own variables: an engine joins no Ray cluster and
reserves no GPUs through Ray again (its tensor parallelism is its own multiprocessing).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from servestack.errors import ClusterError
from servestack.runtimes import Launch
from servestack.supervisor.lineage import Mark, orphaned_groups, stop_groups
from servestack.supervisor.process import EngineProcess
from servestack.supervisor.replica import free_port
from servestack.supervisor.state import pid_alive
from servestack.supervisor.watchdog import Watchdog

PARENT_POLL_SECONDS = 0.5
PORT_ATTEMPTS = 50
UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def node_dir(namespace: str) -> Path:
    """Where launchers of `namespace` keep engine logs and their watchdogs' logs on this node."""
    return Path(tempfile.gettempdir()) / f"servestack-ray-{os.getuid()}" / UNSAFE.sub("_", namespace)


class NodeLauncher:
    """One replica's launcher on its node (a Ray actor): start its engine, follow it, stop it."""

    def __init__(self, namespace: str, stop_timeout: float) -> None:
        self.root = node_dir(namespace)
        self.stop_timeout = stop_timeout
        self.raylet = os.getppid()  # Ray starts workers as children of the node's raylet
        self.reaped = sorted(orphaned_groups(self.root))
        stop_groups(self.reaped, stop_timeout)
        _remove_dead_logs(self.root / "logs")
        remove_dead_claims(self.root / "ports")
        self.mark = Mark.of(self.root)
        self.watchdog = Watchdog(self.mark, stop_timeout, self.root / "watchdog.log")
        self.watchdog.ensure_started()
        self.process: EngineProcess | None = None
        self.output_start = 0
        self.parent_watch: asyncio.Task[None] | None = None

    async def where(self, port: int | None) -> dict[str, Any]:
        """This node: its id and address, a port free on it (`port` when given), the GPUs Ray gave this actor."""
        import ray

        if self.parent_watch is None:
            self.parent_watch = asyncio.get_running_loop().create_task(self._watch_parent())
        address = ray.util.get_node_ip_address()
        if port is None:
            port = claim_port(self.root / "ports", address, os.getpid())
        return {
            "node": ray.get_runtime_context().get_node_id(),
            "address": address,
            "port": port,
            "gpus": [int(g) for g in ray.get_gpu_ids()],
            "reaped": self.reaped,
        }

    async def spawn(self, launch: Launch, name: str) -> int:
        """Start the engine; its pid on this node."""
        log_path = self.root / "logs" / f"{name}.{os.getpid()}.log"
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        self.process = await EngineProcess.spawn(launch, log_path, mark=self.mark.env, inherited=inherited)
        with log_path.open("rb") as log:
            log.seek(self.process.log_offset)
            log.readline()  # the header: the driver writes its own
            self.output_start = log.tell()
        return self.process.pid

    async def wait(self) -> int:
        """Block until the engine exits; its exit code (negative: the signal)."""
        assert self.process is not None
        return await self.process.wait()

    async def read_output(self, offset: int, limit: int) -> bytes:
        """The engine's output from byte `offset` of it, at most `limit` bytes."""
        assert self.process is not None
        with self.process.log_path.open("rb") as log:
            log.seek(self.output_start + offset)
            return log.read(limit)

    async def stop(self, timeout: float) -> int | None:
        """Stop the engine's whole process group (SIGTERM, SIGKILL after `timeout`); its exit code."""
        return await self.process.stop(timeout) if self.process is not None else None

    async def close(self) -> None:
        """Stop the engine, tell the watchdog all is stopped, remove the log: the actor is about to be killed."""
        await self.stop(self.stop_timeout)
        await asyncio.to_thread(self.watchdog.close)
        if self.process is not None:
            self.process.log_path.unlink(missing_ok=True)

    async def _watch_parent(self) -> None:
        while os.getppid() == self.raylet:
            await asyncio.sleep(PARENT_POLL_SECONDS)
        os._exit(1)  # the raylet is gone: the node is dead to the cluster; the watchdog stops the engine


def _remove_dead_logs(logs: Path) -> None:
    """Engine logs of launchers that are gone (`NAME.PID.log`): their output was copied to the driver."""
    for path in logs.glob("*.log"):
        pid = path.suffixes[-2].lstrip(".") if len(path.suffixes) > 1 else ""
        if pid.isdigit() and not pid_alive(int(pid)):
            path.unlink(missing_ok=True)


def claim_port(claims: Path, address: str, owner: int) -> int:
    """A port free on `address` that no live launcher on this machine holds: launchers pick ports at the same
    moment and their engines bind them later, so a port is claimed by a file naming its owner, whose claim
    ends with it (`remove_dead_claims`)."""
    claims.mkdir(parents=True, exist_ok=True)
    for _ in range(PORT_ATTEMPTS):
        port = free_port(address)
        try:
            fd = os.open(claims / str(port), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            continue  # another launcher's engine is about to bind it
        with os.fdopen(fd, "w") as claim:
            claim.write(str(owner))
        return port
    raise ClusterError(f"no free port on {address} after {PORT_ATTEMPTS} tries: every one was claimed")


def remove_dead_claims(claims: Path) -> None:
    """Port claims of launchers that are gone (an empty one is being written)."""
    for path in claims.glob("*"):
        with contextlib.suppress(OSError):
            owner = path.read_text()
            if owner.isdigit() and not pid_alive(int(owner)):
                path.unlink()


def probe_gpus() -> dict[str, Any] | None:
    """This node's GPUs as NVML sees them (a Ray task run on each node by `plan`); None without NVML."""
    from servestack.gpus import read_nvml_inventory

    inventory = read_nvml_inventory()
    if inventory is None:
        return None
    return {
        "gpus": [(g.name, g.total_bytes, g.free_bytes) for g in inventory.gpus],
        "cuda": inventory.cuda_driver_version,
    }
