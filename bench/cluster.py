"""servestack on a real 3-node Ray cluster on this machine: start-up against one box, and a node's death under load.

    python bench/cluster.py                                   # 3 start-ups each, then the three deaths
    python bench/cluster.py --rounds 1 --deaths raylet --ray-health-checks --json out.json

The cluster is bench/harness/ray_local.py's: a head with 4 GPUs and workers w1 and w2 with 2 each
(Ray's GPU ids, no GPUs behind them), node death seen by Ray after 3 missed health checks 0.5 s apart
(`--ray-health-checks`: Ray's own defaults). The stack is simulator services only: `big` (TP 2) and
`small` (TP 1, 4 replicas), placed head: big, small.0, small.1; w1: small.2, small.3.

Start-up: the wall time of `servestack up -d` (it returns once every replica is ready) with the stack's
`cluster:` against the same stack on this box alone (`up --gpus 8xH100`), `--rounds` times each.

Node death, once per `--deaths` entry, each on a fresh instance and a fresh w1: open-loop requests to
`small` at `--rate` per second (8 tokens, ~50 ms; one in `--stream-every` a stream of `--stream-tokens`,
0.5 s by default, so that some are mid-stream when the node dies); after `--before` seconds w1 dies:
`raylet` (its raylet SIGKILLed: dead to Ray, its launchers stop their engines), `node` (everything on
it SIGKILLed at once: a crashed box), or `freeze` (everything on it SIGSTOPped: a box that lost power
or network, whose connections stay open and silent). Reported:
seconds from the death to w1's replicas out of the gateway's pools (its /metrics, polled every 0.1 s)
and to their replacements ready, requests that failed or hung (no answer in 60 s), and the engine
processes running before the death and after the replacements (the same number: none of the dead
node's engines left running; a frozen node's stopped ones are not counted).
Last, the controller (the Ray driver) is SIGKILLed: seconds until none of its engines runs on any node.
Results go to bench/results/cluster-<time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp

from harness.output import machine, write_results
from harness.procs import HarnessError, free_port
from harness.ray_local import DEATHS, HEALTH_CHECKS, NODES, LocalRayCluster, local_ray_cluster
from servestack.cluster.node import node_dir
from servestack.supervisor.lineage import marked_processes

SERVICES = """\
routing: {{policy: round_robin}}
services:
  big: {{engine: sim, model: sim, tp: 2, args: {sim}}}
  small: {{engine: sim, model: sim, tp: 1, replicas: 4, args: {sim}}}
"""
SIM = '["--prefill-rate", "200000", "--decode-rate", "200"]'  # ~50 ms a request of 8 tokens
REPLICAS = 5
VICTIM = "w1"
CLIENT_TIMEOUT = 60.0  # a request still open after this counts as a hang
READY = re.compile(r'servestack_replica_ready\{[^}]*replica="([^"]+)"[^}]*\} (\S+)')


@dataclass
class Outcome:
    sent: float  # seconds after the death (negative: before)
    seconds: float
    stream: bool
    status: int = 0  # 0: no answer
    code: str = ""  # why it failed ("" when it did not)


class Instance:
    """One `servestack up -d` of the stack, in its own home; `down` at the end."""

    def __init__(self, root: Path, stack: str, up_args: list[str], namespace: str = "") -> None:
        self.namespace = namespace
        root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.env = {**os.environ, "SERVESTACK_HOME": str(root / "home")}
        (root / "stack.yaml").write_text(f"version: 1\ngateway: {{port: {self.port}}}\n{stack}")
        started = time.monotonic()
        self.cli("up", "-d", "-f", str(root / "stack.yaml"), *up_args, timeout=300)
        self.up_seconds = time.monotonic() - started
        if [r["status"] for r in self.status()] != ["ready"] * REPLICAS:
            raise HarnessError(f"up -d returned without {REPLICAS} ready replicas: {self.status()}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cli(self, *args: str, timeout: float = 120) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "servestack", *args], capture_output=True, text=True, env=self.env, timeout=timeout
        )
        if done.returncode != 0:
            raise HarnessError(f"servestack {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
        return done.stdout

    def status(self) -> list[dict[str, Any]]:
        return list(json.loads(self.cli("status", "--json"))["services"])

    def down(self) -> None:
        self.cli("down")
        if self.namespace:
            shutil.rmtree(node_dir(self.namespace), ignore_errors=True)  # the launchers' logs and port claims


def engines(namespace: str, frozen: set[int]) -> int:
    """Engine processes launchers of `namespace` started on this machine and that still run (not frozen)."""
    return sum(1 for p in marked_processes(node_dir(namespace)) if p.pid not in frozen)


def cluster_stack(cluster: LocalRayCluster, namespace: str) -> str:
    return f'cluster: {{kind: ray, address: "{cluster.address}", namespace: {namespace}}}\n' + SERVICES.format(sim=SIM)


def startups(cluster: LocalRayCluster, root: Path, rounds: int) -> dict[str, list[float]]:
    seconds: dict[str, list[float]] = {"cluster": [], "one box": []}
    namespace = f"bench-up-{os.getpid()}"
    stacks = {
        "cluster": (cluster_stack(cluster, namespace), [], namespace),
        "one box": (SERVICES.format(sim=SIM), ["--gpus", "8xH100"], ""),
    }
    for n in range(rounds):
        for where, (stack, args, space) in stacks.items():
            instance = Instance(root / f"up-{n}-{where.replace(' ', '-')}", stack, args, space)
            instance.down()
            seconds[where].append(instance.up_seconds)
            print(f"  up -d {where}: {instance.up_seconds:.1f}s", flush=True)
    return seconds


async def request(session: aiohttp.ClientSession, url: str, i: int, stream_tokens: int | None, died: float) -> Outcome:
    """A non-streaming request of 8 tokens, or (`stream_tokens`) a stream of that many."""
    stream = stream_tokens is not None
    body: dict[str, Any] = {"model": "small", "messages": [{"role": "user", "content": f"q{i}"}], "max_tokens": 8}
    if stream:
        body |= {"stream": True, "max_tokens": stream_tokens}
    sent = time.monotonic()
    outcome = Outcome(sent - died, 0.0, stream)
    try:
        async with asyncio.timeout(CLIENT_TIMEOUT), session.post(url, json=body) as resp:
            raw = await resp.read()
        outcome.status = resp.status
        if resp.status != 200:
            outcome.code = f"HTTP {resp.status} {json.loads(raw)['error']['code']}"
        elif stream and not raw.rstrip().endswith(b"data: [DONE]"):
            last = [e for e in raw.split(b"\n\n") if e.startswith(b"data: ")][-1].removeprefix(b"data: ")
            outcome.code = f"stream {json.loads(last)['error']['code']}"
    except TimeoutError:
        outcome.code = "hung"
    except (aiohttp.ClientError, ValueError, KeyError, IndexError) as exc:
        outcome.code = f"malformed {type(exc).__name__}"
    outcome.seconds = time.monotonic() - sent
    return outcome


async def ready_states(session: aiohttp.ClientSession, url: str) -> dict[str, str]:
    async with session.get(f"{url}/metrics") as resp:
        return dict(READY.findall(await resp.text()))


async def until(session: aiohttp.ClientSession, url: str, replicas: set[str], want: str, since: float) -> float:
    """Seconds from `since` until every one of `replicas` reads `want` in the gateway's readiness gauge."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        states = await ready_states(session, url)
        if all(states.get(r) == want for r in replicas):
            return time.monotonic() - since
        await asyncio.sleep(0.1)
    raise HarnessError(f"{sorted(replicas)} never read {want} in the gateway's /metrics")


async def death_under_load(
    cluster: LocalRayCluster, instance: Instance, death: str, args: argparse.Namespace
) -> dict[str, Any]:
    url = instance.url
    victims = {f"{r['service']}.{r['replica']}" for r in instance.status() if r["node_name"] == VICTIM}
    tasks: list[asyncio.Task[Outcome]] = []
    marks: dict[str, float] = {}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def load() -> None:
            began = time.monotonic()
            i = 0
            while "stop" not in marks:
                died = marks.get("died", began + args.before)
                stream_tokens = args.stream_tokens if i % args.stream_every == 0 else None
                tasks.append(
                    asyncio.create_task(request(session, f"{url}/v1/chat/completions", i, stream_tokens, died))
                )
                i += 1
                await asyncio.sleep(max(0.0, i / args.rate - (time.monotonic() - began)))

        sender = asyncio.create_task(load())
        await asyncio.sleep(args.before)
        marks["died"] = time.monotonic()
        killed = set(cluster.kill(VICTIM, death))
        marks["out"] = await until(session, url, victims, "0.0", marks["died"])
        marks["back"] = await until(session, url, victims, "1.0", marks["died"])
        await asyncio.sleep(args.after)
        marks["stop"] = 0.0
        await sender
        outcomes = list(await asyncio.gather(*tasks))
    frozen = killed if death == "freeze" else set()
    return {
        "death": death,
        "victims": sorted(victims),
        "out_of_rotation_seconds": marks["out"],
        "replacements_ready_seconds": marks["back"],
        "engines_after": engines(instance.namespace, frozen),
        **tally(outcomes),
        "failed_requests": [asdict(o) for o in outcomes if o.code],
    }


def tally(outcomes: list[Outcome]) -> dict[str, Any]:
    plain = [o for o in outcomes if not o.stream]
    streams = [o for o in outcomes if o.stream]
    slowest = sorted((o.seconds for o in outcomes if o.sent >= -1 and not o.code), reverse=True)
    return {
        "requests": len(outcomes),
        "non_streaming_ok": sum(1 for o in plain if not o.code),
        "non_streaming": len(plain),
        "streams_ok": sum(1 for o in streams if not o.code),
        "streams": len(streams),
        "failed": dict(Counter(o.code for o in outcomes if o.code)),
        "slowest_ok_after_death_seconds": slowest[:3],
    }


def deaths(cluster: LocalRayCluster, root: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    results = []
    for death in args.deaths:
        namespace = f"bench-{death}-{os.getpid()}"
        instance = Instance(root / f"death-{death}", cluster_stack(cluster, namespace), [], namespace)
        before = engines(instance.namespace, set())
        try:
            result = asyncio.run(death_under_load(cluster, instance, death, args))
        finally:
            instance.down()
            cluster.replace(VICTIM, NODES[VICTIM])
        result["engines_before"] = before
        results.append(result)
        print(f"  {death}: out after {result['out_of_rotation_seconds']:.1f}s, back after "
              f"{result['replacements_ready_seconds']:.1f}s, failed {result['failed']}", flush=True)  # fmt: skip
    return results


def driver_death(cluster: LocalRayCluster, root: Path) -> float:
    """Seconds from the controller's SIGKILL (the Ray driver) until none of its engines runs on any node."""
    namespace = f"bench-driver-{os.getpid()}"
    instance = Instance(root / "driver", cluster_stack(cluster, namespace), [], namespace)
    controller = json.loads(instance.cli("status", "--json"))["instance"]["pid"]
    killed = time.monotonic()
    os.kill(controller, signal.SIGKILL)
    while engines(namespace, set()):
        if time.monotonic() - killed > 120:
            raise HarnessError("engines still run 120 s after their controller's death")
        time.sleep(0.1)
    seconds = time.monotonic() - killed
    shutil.rmtree(node_dir(namespace), ignore_errors=True)
    return seconds


def report(ups: dict[str, list[float]], died: list[dict[str, Any]], driver: float) -> None:
    print(f"\n{'start-up (up -d, all ready)':<30}{'median':>8}{'min':>8}{'max':>8}")
    for where, seconds in ups.items():
        if seconds:
            print(f"{where:<30}{statistics.median(seconds):>7.1f}s{min(seconds):>7.1f}s{max(seconds):>7.1f}s")
    print(f"\n{'death of w1':<8}{'out':>7}{'back':>7}{'non-streaming ok':>19}{'streams ok':>12}"
          f"{'engines running':>17}  failed")  # fmt: skip
    for r in died:
        print(f"{r['death']:<8}{r['out_of_rotation_seconds']:>6.1f}s{r['replacements_ready_seconds']:>6.1f}s"
              f"{r['non_streaming_ok']:>11}/{r['non_streaming']:<7}{r['streams_ok']:>6}/{r['streams']:<5}"
              f"{r['engines_before']:>9}→{r['engines_after']:<7}  {r['failed']}")  # fmt: skip
    print(f"\ncontroller (the Ray driver) SIGKILLed: no engine left on any node after {driver:.1f}s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="start-ups of each kind")
    parser.add_argument("--deaths", nargs="*", choices=DEATHS, default=list(DEATHS), help="how w1 dies, in turn")
    parser.add_argument("--rate", type=float, default=40.0, help="requests per second during a death")
    parser.add_argument("--stream-every", type=int, default=5, help="one request in N streams")
    parser.add_argument("--stream-tokens", type=int, default=100, help="tokens a stream asks for (200 a second)")
    parser.add_argument("--before", type=float, default=5.0, help="seconds of traffic before the death")
    parser.add_argument("--after", type=float, default=5.0, help="seconds of traffic after the replacements are ready")
    parser.add_argument("--ray-health-checks", action="store_true", help="Ray's default health checks, not 0.5 s × 3")
    parser.add_argument("--json", type=Path, help="where to write the results")
    args = parser.parse_args()

    health = None if args.ray_health_checks else HEALTH_CHECKS
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        started = time.monotonic()
        with local_ray_cluster(NODES, health) as cluster:
            cluster_seconds = time.monotonic() - started
            print(f"3-node Ray cluster up in {cluster_seconds:.1f}s", flush=True)
            ups = startups(cluster, Path(tmp), args.rounds)
            died = deaths(cluster, Path(tmp), args)
            driver = driver_death(cluster, Path(tmp))
    report(ups, died, driver)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    doc = {
        "machine": machine(),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "health_checks": health or "ray defaults",
        "cluster_start_seconds": cluster_seconds,
        "startup_seconds": ups,
        "deaths": died,
        "driver_death_to_no_engine_seconds": driver,
    }
    print(f"results: {write_results(f'cluster-{stamp}', doc, args.json)}")


if __name__ == "__main__":
    main()
