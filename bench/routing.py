"""Routing benchmark: servestack's policies and the SGLang router in front of the same simulator replicas.

    python bench/routing.py                      # every policy, both workloads, ~2 minutes
    python bench/routing.py --policies ttft_cost,sglang --workloads shared-prefix

For each workload and each router, four fresh `servestack.sim` processes (prefix caches, a time
scale) are started, the router is put in front of them (a servestack gateway with one policy in its
own process, or `python -m sglang_router.launch_router --policy cache_aware` from PyPI
`sglang-router`), and the same seeded requests are streamed through it. Reported per run: the
prefix-cache hit rate summed over the replicas' own metrics, TTFT p50/p99, and goodput (requests
whose TTFT met the SLO, per simulated second). Times are simulated seconds (wall ÷ time scale).
Results go to `bench/results/routing-<time>.json`.

Workloads:
  shared-prefix  64 groups × 16 prompts; each group shares a ~2,000-token system prompt, each prompt
                 adds a ~40-token question; requests in random order, Poisson arrivals.
  multi-turn     64 conversations of 6 turns; each turn resends the whole conversation so far plus
                 a new ~120-token message, after the previous answer and a think time.

The SGLang router is looked for in `--sglang-python` (default: `.venv-sglang/bin/python`, then this
interpreter); without it that row is skipped with a note.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from harness.routing_workloads import WORKLOADS, Outcome, Scenario

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
POLICIES = ("round_robin", "least_load", "cache_aware", "ttft_cost")


@dataclass
class RunResult:
    workload: str
    router: str
    requests: int
    failed: int
    hit_rate: float
    ttft_p50: float
    ttft_p99: float
    goodput: float  # requests meeting the SLO per simulated second
    slo_met: float  # fraction
    seconds: float  # simulated duration
    notes: list[str] = field(default_factory=list)


# --- processes ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Processes:
    """Child processes of one run, each in its own process group; all are stopped on exit."""

    def __init__(self) -> None:
        self.children: list[subprocess.Popen[bytes]] = []
        self.logs = Path(tempfile.mkdtemp(prefix="servestack-bench-"))

    def start(self, argv: list[str]) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{len(self.children)}.log").open("wb")
        child = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.children.append(child)
        return child

    def tail(self, child: int = -1) -> str:
        return (self.logs / f"{len(self.children) + child if child < 0 else child}.log").read_text()[-2000:]

    def stop(self) -> None:
        for child in self.children:
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGTERM)
        for child in self.children:
            try:
                child.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait(5)
        self.children = []
        shutil.rmtree(self.logs, ignore_errors=True)


async def wait_healthy(url: str, path: str = "/health", timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(url + path) as resp:
                    if resp.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{url}{path} did not answer 200 within {timeout:.0f}s")


async def start_sims(procs: Processes, s: Scenario) -> list[str]:
    urls = []
    for i in range(s.replicas):
        port = free_port()
        procs.start([sys.executable, "-m", "servestack.sim", "--port", str(port), "--replica", f"r{i}", "--model",
                     "sim", *s.sim_flags()])  # fmt: skip
        urls.append(f"http://127.0.0.1:{port}")
    await asyncio.gather(*(wait_healthy(u) for u in urls))
    return urls


async def start_router(procs: Processes, router: str, workers: list[str], sglang_python: str | None) -> str:
    port = free_port()
    if router == "sglang":
        assert sglang_python is not None
        argv = [sglang_python, "-m", "sglang_router.launch_router", "--worker-urls", *workers, "--port", str(port),
                "--policy", "cache_aware", "--log-level", "warn", "--host", "127.0.0.1",
                "--prometheus-host", "127.0.0.1", "--prometheus-port", str(free_port())]  # fmt: skip
    else:
        argv = [sys.executable, __file__, "--serve-gateway", router, "--port", str(port), *workers]
    procs.start(argv)
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_healthy(url, "/health")
    except RuntimeError as exc:
        raise RuntimeError(f"{exc}; its log:\n{procs.tail()}") from None
    if router == "sglang":
        await asyncio.sleep(1.0)  # it registers the workers after it starts answering /health
    return url


async def cache_counters(workers: list[str]) -> tuple[float, float]:
    queries = hits = 0.0
    async with aiohttp.ClientSession() as session:
        for url in workers:
            async with session.get(url + "/metrics") as resp:
                for line in (await resp.text()).splitlines():
                    if line.startswith("vllm:prefix_cache_queries_total"):
                        queries += float(line.split()[-1])
                    elif line.startswith("vllm:prefix_cache_hits_total"):
                        hits += float(line.split()[-1])
    return queries, hits


async def run_one(workload: str, router: str, s: Scenario, sglang_python: str | None) -> RunResult:
    procs = Processes()
    try:
        workers = await start_sims(procs, s)
        url = await start_router(procs, router, workers, sglang_python)
        started = time.perf_counter()
        outcomes = await WORKLOADS[workload](url, s)
        seconds = (time.perf_counter() - started) / s.time_scale
        queries, hits = await cache_counters(workers)
    finally:
        procs.stop()
    return summarise(workload, router, outcomes, seconds, hits / queries if queries else 0.0, s)


def summarise(
    workload: str, router: str, outcomes: list[Outcome], seconds: float, hit_rate: float, s: Scenario
) -> RunResult:
    ttfts = sorted(o.ttft for o in outcomes if o.ttft is not None and not o.error)
    met = sum(1 for t in ttfts if t <= s.ttft_slo)
    failed = len(outcomes) - len(ttfts)
    errors = sorted({o.error for o in outcomes if o.error})
    return RunResult(
        workload=workload, router=router, requests=len(outcomes), failed=failed, hit_rate=hit_rate,
        ttft_p50=percentile(ttfts, 0.50), ttft_p99=percentile(ttfts, 0.99), goodput=met / seconds,
        slo_met=met / len(outcomes), seconds=seconds, notes=[f"errors: {', '.join(errors)}"] if errors else [],
    )  # fmt: skip


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(q * len(values)))]


# --- the servestack gateway, in its own process ---------------------------------------------------


def serve_gateway(spec: str, port: int, workers: list[str]) -> None:
    """Serve a gateway with the policy `spec`: a name, or `name:key=value+…` to tune it."""
    from servestack.engines.sim import METRIC_NAMES
    from servestack.gateway import Endpoint, EndpointTable, Gateway, GatewayServer
    from servestack.gateway.fleet.routing import make_policy
    from servestack.stack import Routing

    policy, _, tuning = spec.partition(":")
    options: dict[str, Any] = {k: float(v) for k, v in (kv.split("=") for kv in tuning.split("+") if kv)}

    async def serve() -> None:
        table = EndpointTable(Routing(policy=policy))
        for i, url in enumerate(workers):
            table.upsert(Endpoint(f"sim.{i}", "sim", ("sim",), url, ready=True, engine="sim",
                                  health_url=url + "/health", metrics_url=url + "/metrics",
                                  metric_names=METRIC_NAMES))  # fmt: skip
        if options:
            table.pool("sim").policy = make_policy(policy, **options)
        server = GatewayServer(Gateway(table), "127.0.0.1", port)
        await server.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await server.stop()

    try:
        import uvloop

        uvloop.run(serve())
    except ImportError:
        asyncio.run(serve())


# --- report --------------------------------------------------------------------------------------


def print_table(results: list[RunResult], s: Scenario) -> None:
    print(f"\nTTFT SLO {s.ttft_slo:g}s; times in simulated seconds (time scale {s.time_scale:g})")
    header = (
        f"{'workload':<14} {'router':<25} {'hit rate':>8} {'TTFT p50':>9} {'TTFT p99':>9} {'goodput':>9} "
        f"{'SLO met':>8} {'failed':>6}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        name = "sglang-router cache_aware" if r.router == "sglang" else r.router
        print(f"{r.workload:<14} {name:<25} {r.hit_rate:>8.1%} {r.ttft_p50:>8.3f}s {r.ttft_p99:>8.3f}s "
              f"{r.goodput:>7.2f}/s {r.slo_met:>8.1%} {r.failed:>6}")  # fmt: skip


def git_revision() -> str:
    argv = ["git", "rev-parse", "--short", "HEAD"]
    probe = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
    return probe.stdout.strip()


def find_sglang(given: str | None) -> str | None:
    candidates = [given] if given else [str(ROOT / ".venv-sglang" / "bin" / "python"), sys.executable]
    for python in candidates:
        if python and (Path(python).exists() or shutil.which(python)):
            probe = subprocess.run([python, "-c", "import sglang_router"], capture_output=True, check=False)
            if probe.returncode == 0:
                return python
    return None


async def main_async(args: argparse.Namespace) -> None:
    s = Scenario(time_scale=args.time_scale, rate=args.rate, ttft_slo=args.ttft_slo, seed=args.seed)
    routers = [r.strip() for r in args.policies.split(",") if r.strip()]
    sglang_python = find_sglang(args.sglang_python) if "sglang" in routers else None
    if "sglang" in routers and sglang_python is None:
        print("note: sglang-router is not installed (pip install sglang-router); its rows are skipped")
        routers.remove("sglang")
    results = []
    for workload in args.workloads.split(","):
        for router in routers:
            print(f"running {workload} through {router} …", flush=True)
            results.append(await run_one(workload, router, s, sglang_python))
    print_table(results, s)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"routing-{time.strftime('%Y%m%d-%H%M%S')}.json"
    run = {"command": " ".join(sys.argv), "revision": git_revision(), "cpus": os.cpu_count(), "python": sys.version}
    report = {"run": run, "scenario": asdict(s), "results": [asdict(r) for r in results]}
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten to {out.relative_to(ROOT)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--policies", default=",".join((*POLICIES, "sglang")), help="routers to compare")
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help="shared-prefix,multi-turn")
    parser.add_argument("--time-scale", type=float, default=Scenario.time_scale)
    parser.add_argument("--rate", type=float, default=Scenario.rate, help="shared-prefix requests per sim second")
    parser.add_argument("--ttft-slo", type=float, default=Scenario.ttft_slo, help="simulated seconds")
    parser.add_argument("--seed", type=int, default=Scenario.seed)
    parser.add_argument("--sglang-python", help="interpreter with sglang-router installed")
    parser.add_argument("--serve-gateway", metavar="POLICY", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("workers", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_gateway:
        serve_gateway(args.serve_gateway, args.port, args.workers)
        return
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
