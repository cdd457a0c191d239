"""The supervisor through its launcher interface: a replica runs where its launcher places it (another port,
a node), and an engine lost with its node is placed again at once, elsewhere, with the event in its history
— the mechanism the Ray launchers use (tests/cluster), driven here by a stand-in of two "nodes" that are
processes on this machine."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from servestack.engines import EngineConfig
from servestack.plan import ServicePlan, make_plan
from servestack.runtimes import Launch
from servestack.settings import Settings
from servestack.stack import parse_stack
from servestack.supervisor import Replica, ReplicaStatus, StateStore, Supervisor, free_port
from servestack.supervisor.launcher import Place
from servestack.supervisor.process import NO_MARK, EngineProcess, signal_group

pytestmark = pytest.mark.anyio


class LosableEngine:
    """An engine process that can be "lost with its node": killed, and reported lost instead of exited."""

    def __init__(self, process: EngineProcess) -> None:
        self.process = process
        self.pid, self.pgid, self.log_path = process.pid, process.pgid, process.log_path
        self._lost: str | None = None

    @property
    def returncode(self) -> int | None:
        return self.process.returncode

    @property
    def lost(self) -> str | None:
        return self._lost

    def lose(self, why: str) -> None:
        self._lost = why
        signal_group(self.pgid, signal.SIGKILL)

    async def wait(self) -> int | None:
        return await self.process.wait()

    async def stop(self, timeout: float) -> int | None:
        return await self.process.stop(timeout)

    def read_log(self, limit: int = 1 << 20) -> str:
        return self.process.read_log(limit)


@dataclass
class TwoNodes:
    """Launchers that place each replica on the first node not lost, at a port of its own."""

    nodes: list[str] = field(default_factory=lambda: ["n1", "n2"])
    engines: list[LosableEngine] = field(default_factory=list)
    releases: int = 0

    def launcher(self, plan: ServicePlan, index: int) -> NodeLauncher:
        return NodeLauncher(self)


@dataclass
class NodeLauncher:
    cluster: TwoNodes
    place: Place | None = None

    async def reserve(self, config: EngineConfig) -> Place:
        if self.place is None:
            node = self.cluster.nodes[0]
            self.place = Place(replace(config, port=free_port(config.host)), node=node, node_name=f"node-{node}")
        return self.place

    async def spawn(self, launch: Launch, log_path: Path, *, mark: Mapping[str, str] = NO_MARK) -> LosableEngine:
        engine = LosableEngine(await EngineProcess.spawn(launch, log_path, mark=mark))
        self.cluster.engines.append(engine)
        return engine

    async def release(self) -> None:
        self.cluster.releases += self.place is not None
        self.place = None


async def wait_status(replica: Replica, status: ReplicaStatus, node: str | None = None) -> None:
    async with asyncio.timeout(30):
        while replica.state.status is not status or (node and replica.state.node != node):
            await asyncio.sleep(0.05)


@pytest.mark.parametrize("load", ["always", "on-demand"])
async def test_a_replica_lost_with_its_node_is_placed_again_elsewhere(tmp_path: Path, load: str) -> None:
    stack = parse_stack(f"services:\n  chat: {{engine: sim, model: sim, load: {load}}}\n", source="t", environ={})
    settings = Settings(home=tmp_path / "home", ready_timeout=60)
    nodes = TwoNodes()
    async with Supervisor(StateStore(settings.state_dir), settings, launchers=nodes) as supervisor:
        replica = supervisor.prepare(make_plan(stack).services["chat"])
        prepared_port = replica.config.port
        await supervisor.start(replica)
        first = replica.state
        assert (first.node, first.node_name) == ("n1", "node-n1")
        assert first.port != prepared_port and f"--port {first.port}" in first.command
        assert replica.base_url.endswith(f":{first.port}")

        nodes.nodes.remove("n1")
        nodes.engines[0].lose("node n1 died")
        if load == "on-demand":  # not restarted: the next request loads it
            await wait_status(replica, ReplicaStatus.FAILED)
            assert replica.state.events[-1].message.endswith("not restarted (on-demand: the next request loads it)")
            assert nodes.releases == 1
            return
        await wait_status(replica, ReplicaStatus.READY, node="n2")
        second = replica.state
        assert (second.node, second.restarts) == ("n2", 1)
        assert second.port != first.port and second.pid != first.pid
        messages = [e.message for e in second.events]
        assert "lost: node n1 died — placing it again" in messages
        assert messages[-2] == f"started (pid {second.pid} on node node-n2)"
        assert messages[-1].startswith("back after restart 1 (ready in")
        assert nodes.releases == 1  # the lost place given back before the next
    assert nodes.releases == 2  # and the second one when it stopped
