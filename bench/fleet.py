"""Fleet size: what a routing decision and the background watch cost as the number of replicas grows.

    python bench/fleet.py                                   # 4, 64, 256 replicas × every policy, ~6 minutes
    python bench/fleet.py --sizes 4,256 --policies ttft_cost --seconds 4 --rounds 1
    python bench/fleet.py --nginx                           # + nginx proxying to the same replicas
    git archive REV src | tar -x -C /tmp/old && python bench/fleet.py --label after --compare before=/tmp/old/src

The replicas are one nginx worker listening on as many ports as there are replicas, answering at
once with a canned completion, `/health` and a small `/metrics` in the simulator's names; the load
is `wrk` cycling through servestack's shared-prefix dataset (harness/fleet_load.py). Both are C and
share core 0, where they serve ~50,000 req/s (the "replicas direct" line), so the gateway, in its
own process pinned to core 1, is the bottleneck: until 2026-12-07 the replicas and the client were
Python and took core 0 whole at ~7,000 req/s, keeping the gateway's core only 29-75 % busy, so req/s
measured the harness. The gateway has one endpoint per port, the policy under test and its
background watch at the stack file's defaults (probes every 2 s, scrapes every 1 s).

First, the routing decision alone, in a process of its own on the gateway's core: CPU microseconds
per request for choosing a replica and deciding whether a retry could go elsewhere, with 32 requests
outstanding (each finishes when the 33rd is chosen), on shared-prefix prompts. Then, per size and
policy over HTTP: requests/s at concurrency 32 (non-streamed, after a second of warm-up that reaches
every replica), the gateway's requests per CPU-second (its capacity per core, robust to noise from
other processes), and the added latency (p50/p99 minus the replicas' own, measured directly). Then
the gateway's idle CPU: the share of a core it uses with no traffic, i.e. its probes and scrapes,
per size.

Each round runs every policy and, for each policy and each copy of the sources, starts a gateway per
size at once (all on the gateway's core; the ones not under load only probe and scrape) and cuts each
size's `--seconds` of load into `--bursts` bursts, taken in turn across the sizes (smallest or largest
first, by round). On a shared machine one configuration's speed moves by a third from one second to the
next, more than the fleet size moves it, so the verdicts compare sizes burst by burst: a verdict is the
median over every round's bursts of (largest ÷ smallest fleet's figure in the same burst), with the
quartiles. `--compare LABEL=SRC` measures another copy of servestack's sources too (the gateway and the
decisions run with it first on PYTHONPATH), right after the same policy with this one: before and after
a change, in one run. `--nginx` ends each round with nginx proxying to the same replicas in turn on the
gateway's core, the same way: what a C proxy and the kernel pay for a larger fleet.

Prints a table and writes bench/results/fleet-<time>.json (or --out).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.clients import Measurement
from harness.fleet_load import chat_bodies, require_tools, run_wrk_bodies, start_nginx_proxy, start_replicas
from harness.output import machine, write_results
from harness.procs import HarnessError, Proc, cpu_seconds, free_port, tree_pids, wait_for

POLICIES = ("round_robin", "least_load", "cache_aware", "ttft_cost")
SIZES = (4, 64, 256)
TARGET_RATIO = 0.8  # req/s with the largest fleet ≥ this × with the smallest (issue 14)
TARGET_IDLE = 0.02  # idle CPU at 256 replicas ≤ 2% of a core
BODIES = 1024  # distinct request bodies wrk cycles through (64 system prompts, 16 questions each)
WORDS = ("harbor", "ledger", "signal", "copper", "meadow", "lantern", "orbit", "pebble", "quartz", "river", "saddle",
         "timber", "velvet")  # fmt: skip
CHAT = b'{"model":"sim","max_tokens":4,"messages":[{"role":"user","content":"hi"}]}'


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="replica counts (default 4,64,256)")
    parser.add_argument("--policies", default=",".join(POLICIES), help="comma-separated (default: every policy)")
    parser.add_argument("--seconds", type=float, default=5.0, help="load per size and round (default 5)")
    parser.add_argument("--bursts", type=int, default=5, help="bursts the load is cut into (default 5)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds per size and policy (default 2)")
    parser.add_argument("--concurrency", type=int, default=32, help="client connections (default 32)")
    parser.add_argument("--decisions", type=int, default=20_000, help="routing decisions timed per size and policy")
    parser.add_argument("--idle-seconds", type=float, default=20.0, help="idle CPU window (default 20; 0 skips)")
    parser.add_argument("--cpus", default="0,1", help="load+replicas core, gateway core (default 0,1)")
    parser.add_argument("--label", default="this", help="what to call the sources this script runs with")
    parser.add_argument("--compare", action="append", default=[], metavar="LABEL=SRC", help="other sources to measure")
    parser.add_argument("--nginx", action="store_true", help="also nginx proxying to them (reference)")
    parser.add_argument("--out", type=Path, help="JSON output (default bench/results/fleet-<time>.json)")
    parser.add_argument("--time-decisions", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve-gateway", metavar="POLICY", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("workers", nargs="*", help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    if args.serve_gateway:
        from routing import serve_gateway

        serve_gateway(args.serve_gateway, args.port, args.workers)
        return 0
    sizes = [int(s) for s in args.sizes.split(",")]
    policies = args.policies.split(",")
    if args.time_decisions:
        print(json.dumps(measure_decisions(sizes, policies, args.decisions, args.concurrency)))
        return 0
    trees = {
        args.label: {},
        **{label: {"PYTHONPATH": src} for label, _, src in (c.partition("=") for c in args.compare)},
    }
    require_tools()
    client_cpus, gateway_cpus = args.cpus.split(",")
    decisions = (
        {label: time_decisions(env, args, gateway_cpus) for label, env in trees.items()} if args.decisions else {}
    )
    with tempfile.TemporaryDirectory(prefix="servestack-fleet-") as tmp:
        replicas, ports = start_replicas(Path(tmp), max(sizes), client_cpus)
        try:
            direct = bench(f"http://127.0.0.1:{ports[0]}", args, client_cpus)
            runs = measure(Path(tmp), ports, trees, sizes, policies, args)
            idle = measure_idle(Path(tmp), ports, trees, sizes, args) if args.idle_seconds > 0 else {}
        finally:
            replicas.stop()
    doc = {
        "machine": machine(),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if v is not None},
        "trees": {label: env.get("PYTHONPATH", "this script's") for label, env in trees.items()},
        "decisions": decisions,
        "direct": vars(direct),
        "runs": runs,
        "idle": idle,
    }
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = write_results(f"fleet-{stamp}", doc, args.out)
    render(doc, [*trees, *(["nginx"] if args.nginx else [])], sizes, policies)
    print(f"wrote {path}")
    return 0


# --- the gateway, in a process of its own ----------------------------------------------------------


def start_gateway(tmp: Path, policy: str, ports: list[int], cpus: str, env: dict[str, str]) -> tuple[Proc, str]:
    port = free_port()
    workers = [f"http://127.0.0.1:{p}" for p in ports]
    argv = [sys.executable, __file__, "--serve-gateway", policy, "--port", str(port), *workers]
    proc = Proc(f"gateway-{policy}-{len(ports)}", argv, tmp, cpus=cpus, env=env)
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: _chat_ok(url, proc), 60, f"a chat completion through the gateway ({policy}, {len(ports)})")
    return proc, url


def _chat_ok(url: str, proc: Proc) -> bool:
    if not proc.alive():
        raise HarnessError(f"{proc.name} exited; {proc.log_path}:\n{proc.log_tail()}")
    headers = {"Content-Type": "application/json"}
    request = urllib.request.Request(url + "/v1/chat/completions", data=CHAT, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return bool(response.status == 200)
    except OSError:
        return False


# --- measuring -------------------------------------------------------------------------------------


def measure(
    tmp: Path, ports: list[int], trees: dict[str, dict[str, str]], sizes: list[int], policies: list[str],
    args: argparse.Namespace,
) -> list[dict[str, Any]]:  # fmt: skip
    """Per round: each policy and tree with a gateway per size up at once, their bursts interleaved; then
    nginx at each size the same way (`--nginx`)."""
    client_cpus, gateway_cpus = args.cpus.split(",")
    runs = []
    for round_number in range(1, args.rounds + 1):
        for policy in policies:
            for label, env in trees.items():
                print(f"round {round_number} · {policy} · {label} · {', '.join(map(str, sizes))} replicas", flush=True)
                proxies = {size: start_gateway(tmp, policy, ports[:size], gateway_cpus, env) for size in sizes}
                for size, run in measure_sizes(proxies, args, client_cpus, round_number).items():
                    runs.append({"tree": label, "round": round_number, "replicas": size, "policy": policy, **run})
        if args.nginx:
            print(f"round {round_number} · nginx · {', '.join(map(str, sizes))} replicas", flush=True)
            proxies = {size: start_nginx_proxy(tmp, ports[:size], gateway_cpus) for size in sizes}
            for size, run in measure_sizes(proxies, args, client_cpus, round_number).items():
                runs.append({"tree": "nginx", "round": round_number, "replicas": size, "policy": "round_robin", **run})
    return runs


def measure_sizes(
    proxies: dict[int, tuple[Proc, str]], args: argparse.Namespace, client_cpus: str, round_number: int
) -> dict[int, dict[str, Any]]:
    """`--bursts` bursts of load per proxy (one per fleet size, all up at once, stopped after), each
    size's in turn (smallest or largest first, by round): on this kind of machine a configuration's
    speed moves by a third within a minute, so the sizes compare burst by burst, seconds apart."""
    order = sorted(proxies) if round_number % 2 else sorted(proxies, reverse=True)
    bursts: dict[int, list[dict[str, Any]]] = {size: [] for size in order}
    try:
        pids = {size: tree_pids(proc.pid) for size, (proc, _) in proxies.items()}
        for size in order:
            bench(proxies[size][1], args, client_cpus, seconds=1.0)  # reaches every replica: connections open
        for _ in range(args.bursts):
            for size in order:
                before = cpu_seconds(pids[size])
                m = bench(proxies[size][1], args, client_cpus, seconds=args.seconds / args.bursts)
                used = cpu_seconds(pids[size]) - before
                bursts[size].append({**vars(m), "cpu_seconds": used})
    finally:
        for proc, _ in proxies.values():
            proc.stop()
    return {size: pooled(runs) for size, runs in bursts.items()}


def pooled(bursts: list[dict[str, Any]]) -> dict[str, Any]:
    """One size's figures over its bursts: totals, the bursts' median latencies, and each burst's own."""
    requests, seconds, used = (sum(b[k] for b in bursts) for k in ("requests", "seconds", "cpu_seconds"))
    return {
        "requests": requests, "seconds": seconds, "errors": sum(b["errors"] for b in bursts),
        "rps": requests / seconds, "cpu_seconds": used, "per_cpu_second": requests / used if used > 0 else None,
        **{k: statistics.median(b[k] for b in bursts) for k in ("p50_ms", "p90_ms", "p99_ms")},
        "bursts": [{"rps": b["rps"], "per_cpu_second": b["requests"] / b["cpu_seconds"] if b["cpu_seconds"] > 0
                    else None} for b in bursts],
    }  # fmt: skip


def bench(url: str, args: argparse.Namespace, cpus: str, seconds: float | None = None) -> Measurement:
    """wrk at the set concurrency for `seconds` (a round's length by default)."""
    chat = url + "/v1/chat/completions"
    bodies = chat_bodies(BODIES, input_len=96)
    return run_wrk_bodies(chat, bodies, seconds=seconds or args.seconds, connections=args.concurrency, cpus=cpus)


def measure_idle(
    tmp: Path, ports: list[int], trees: dict[str, dict[str, str]], sizes: list[int], args: argparse.Namespace
) -> dict[str, dict[str, Any]]:
    """The gateway's CPU with no traffic (its probes and scrapes), as a share of one core, per tree and size."""
    idle: dict[str, dict[str, Any]] = {label: {} for label in trees}
    for size in sizes:
        for label, env in trees.items():
            print(f"idle · {size} replicas · {label}", flush=True)
            gateway, _ = start_gateway(tmp, "ttft_cost", ports[:size], args.cpus.split(",")[1], env)
            try:
                time.sleep(3.0)  # past start-up and the first round of probes
                pids = tree_pids(gateway.pid)
                before, start = cpu_seconds(pids), time.monotonic()
                time.sleep(args.idle_seconds)
                used, wall = cpu_seconds(pids) - before, time.monotonic() - start
            finally:
                gateway.stop()
            idle[label][str(size)] = {"cpu_seconds": used, "seconds": wall, "core_share": used / wall}
    return idle


def time_decisions(env: dict[str, str], args: argparse.Namespace, cpus: str) -> list[dict[str, Any]]:
    """`measure_decisions` in a process of its own, with `env` (the sources to time), on `cpus`."""
    argv = ["taskset", "-c", cpus, sys.executable, __file__, "--time-decisions", "--sizes", args.sizes,
            "--policies", args.policies, "--decisions", str(args.decisions),
            "--concurrency", str(args.concurrency)]  # fmt: skip
    out = subprocess.run(argv, capture_output=True, text=True, check=True, env={**os.environ, **env}).stdout
    results: list[dict[str, Any]] = json.loads(out.splitlines()[-1])
    return results


def measure_decisions(sizes: list[int], policies: list[str], count: int, outstanding: int) -> list[dict[str, Any]]:
    """CPU µs per routing decision (choose, the retry check, finish) in a pool of each size, per policy."""
    from collections import deque

    from servestack.gateway import Endpoint, EndpointTable
    from servestack.gateway.fleet.routing import Attempt, RouteRequest
    from servestack.stack import Routing

    rng = random.Random(7)
    systems = [" ".join(rng.choices(WORDS, k=96)) for _ in range(64)]
    payloads = [
        {"messages": [{"role": "system", "content": rng.choice(systems)},
                      {"role": "user", "content": " ".join(rng.choices(WORDS, k=8))}]}
        for _ in range(1024)
    ]  # fmt: skip
    results = []
    for size in sizes:
        for policy in policies:
            table = EndpointTable(Routing(policy=policy))
            for i in range(size):
                table.upsert(Endpoint(f"r.{i}", "r", ("m",), f"http://127.0.0.1:{1000 + i}", ready=True))
            pool = table.pool("m")
            untried = retry_check(pool)
            held: deque[Attempt] = deque()
            chosen: set[str] = set()
            start = time.process_time()
            for i in range(count):
                attempt = pool.choose(RouteRequest(payloads[i % len(payloads)]))
                attempt.endpoint.in_flight += 1
                untried([attempt.endpoint.id])
                chosen.add(attempt.endpoint.id)
                held.append(attempt)
                if len(held) > outstanding:
                    done = held.popleft()
                    done.endpoint.in_flight -= 1
                    pool.finish(done, ok=True)
            seconds = time.process_time() - start
            results.append({"replicas": size, "policy": policy, "us_per_decision": 1e6 * seconds / count,
                            "replicas_used": len(chosen)})  # fmt: skip
    return results


def retry_check(pool: Any) -> Callable[[list[str]], bool]:
    """The retry decision (is there a candidate not tried yet?). Before issue 14's change the gateway walked
    the candidates again for it; the fallback times that, so this script measures the code before it too."""
    untried: Callable[[list[str]], bool] | None = getattr(pool, "untried", None)
    return untried or (lambda tried: any(e.id not in tried for e in pool.candidates()))


# --- report ----------------------------------------------------------------------------------------


def median(runs: list[dict[str, Any]], key: str) -> float:
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else float("nan")


def render(doc: dict[str, Any], labels: list[str], sizes: list[int], policies: list[str]) -> None:
    runs, direct = doc["runs"], doc["direct"]
    if doc["decisions"]:
        print("\nrouting decision alone (CPU µs per request; in brackets, the replicas that got requests)")
        print(f"{'policy':<22} " + " ".join(f"{f'{size} replicas':>16}" for size in sizes))
        for policy in policies:
            for label in doc["decisions"]:
                by_size = {d["replicas"]: d for d in doc["decisions"][label] if d["policy"] == policy}
                cells = [f"{by_size[n]['us_per_decision']:>8.1f} ({by_size[n]['replicas_used']:>4})" for n in sizes]
                print(f"{f'{policy} ({label})':<22} " + " ".join(f"{c:>16}" for c in cells))
    print(f"\nload average {doc['machine']['load_average']}; replicas direct: {direct['rps']:,.0f} req/s, "
          f"p50 {direct['p50_ms']:.2f} ms, p99 {direct['p99_ms']:.2f} ms")  # fmt: skip
    header = f"{'policy':<22} {'replicas':>8} {'req/s':>8} {'req/CPU-s':>10} {'+p50 ms':>8} {'+p99 ms':>8} errors"
    print(header)
    print("-" * len(header))
    for policy in policies:
        for label in labels:
            for size in sizes:
                mine = [r for r in runs if r["policy"] == policy and r["replicas"] == size and r["tree"] == label]
                if not mine:  # nginx runs only round_robin
                    continue
                p50, p99 = median(mine, "p50_ms") - direct["p50_ms"], median(mine, "p99_ms") - direct["p99_ms"]
                errors = sum(r["errors"] for r in mine)
                print(
                    f"{f'{policy} ({label})':<22} {size:>8} {median(mine, 'rps'):>8,.0f} "
                    f"{median(mine, 'per_cpu_second'):>10,.0f} {p50:>+8.2f} {p99:>+8.2f} {errors:>6}"
                )
    print()
    for label in labels:
        for line in verdicts([r for r in runs if r["tree"] == label], sizes, policies):
            print(f"{label}: {line}")
        for size, figures in doc["idle"].get(label, {}).items():
            share = figures["core_share"]
            mark = (
                f" (target ≤ {TARGET_IDLE:.0%}: {'met' if share <= TARGET_IDLE else 'missed'})" if size == "256" else ""
            )
            print(f"{label}: idle CPU with {size} replicas: {share:.1%} of a core{mark}")


def verdicts(runs: list[dict[str, Any]], sizes: list[int], policies: list[str]) -> list[str]:
    """Per policy: req/s and req/CPU-s with the largest fleet over the smallest, the median of the ratios
    of paired bursts (the n-th burst of each size in a round, seconds apart), against the target."""
    small, large = min(sizes), max(sizes)
    lines = []
    for policy in policies:
        parts = []
        for key, what in (("rps", "req/s"), ("per_cpu_second", "req/CPU-s")):
            ratios = paired_ratios([r for r in runs if r["policy"] == policy], key, small, large)
            if not ratios:
                continue
            ratio, spread = statistics.median(ratios), ""
            if len(ratios) > 1:
                low, _, high = statistics.quantiles(ratios, n=4)
                spread = f" [{low:.2f}–{high:.2f}, {len(ratios)} pairs]"
            parts.append(f"{what} {ratio:.2f}x{spread} ({'met' if ratio >= TARGET_RATIO else 'missed'})")
        if parts:
            verdict = ", ".join(parts)
            lines.append(f"{policy}: {large} over {small} replicas: {verdict}; target ≥ {TARGET_RATIO}x")
    return lines


def paired_ratios(runs: list[dict[str, Any]], key: str, small: int, large: int) -> list[float]:
    """Per round and burst: `key` with the large fleet over the small one, in the same round's same burst."""
    by_round: dict[int, dict[int, list[dict[str, Any]]]] = {}
    for run in runs:
        by_round.setdefault(run["round"], {})[run["replicas"]] = run["bursts"]
    return [
        b[key] / a[key]
        for sizes in by_round.values()
        if small in sizes and large in sizes
        for a, b in zip(sizes[small], sizes[large], strict=False)
        if a[key] and b[key]
    ]


if __name__ == "__main__":
    sys.exit(main())
