"""Gateway overhead, side by side: the upstream direct, and servestack, the SGLang router, LiteLLM and nginx in front.

    python bench/gateway_overhead.py                       # every target, 2 rounds of 5 s, both modes
    python bench/gateway_overhead.py --seconds 8 --rounds 2 --targets direct,servestack,nginx
    python bench/gateway_overhead.py --full                # servestack with auth, metrics, usage, routing on
    python bench/gateway_overhead.py --granian             # also the gateway app under uvicorn vs granian

Layout (2 cores): the client (`wrk -t1 -c32`) and the upstream (the simulator in instant mode) share
core 0; each proxy is pinned to core 1, so its requests/s are per core. Rounds interleave the
targets so a noisy minute hurts all of them alike, and a verdict against a peer is the median of the
rounds' ratios (on a shared VM, short rounds and many of them: `--seconds 1 --rounds 20`). Added
latency is the target's percentile minus the direct one's; at a fixed concurrency it includes
queueing, so the script also measures at a fixed 1,000 requests/s (Poisson arrivals from
`servestack bench --rate`). Streams: chunks/s is requests/s times the SSE events one answer carries
through that target.

Prints a table and writes bench/results/gateway_overhead.json (or --out).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from harness.clients import Measurement, run_servestack_bench, run_wrk, wrk_available
from harness.output import machine, write_results
from harness.procs import HarnessError, Proc, cpu_seconds, free_port
from harness.targets import BENCH_DIR, Layout, Target, make_targets

ALL_TARGETS = "direct,bare,servestack,sglang-router,litellm,nginx"
BODIES = {
    "whole": b'{"model":"sim","max_tokens":16,"messages":[{"role":"user","content":"Say hello to the benchmark."}]}',
    "stream": b'{"model":"sim","max_tokens":16,"stream":true,"stream_options":{"include_usage":true},'
    b'"messages":[{"role":"user","content":"Say hello to the benchmark."}]}',
}
console = Console(width=None if sys.stdout.isatty() else 180)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", default=ALL_TARGETS, help=f"comma-separated (default: {ALL_TARGETS})")
    parser.add_argument("--granian", action="store_true", help="add the gateway app under uvicorn and granian")
    parser.add_argument("--full", action="store_true", help="servestack with auth, metrics, usage and routing on")
    parser.add_argument("--stack", type=Path, help="servestack's stack file (default: bench/stacks/gateway.yaml)")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of one round (default 5)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds per target and mode (default 2)")
    parser.add_argument("--connections", type=int, default=32, help="client connections (default 32)")
    parser.add_argument("--modes", default="whole,stream", help="whole,stream (default both)")
    parser.add_argument("--rate", type=float, default=1000.0, help="fixed-rate latency round; 0 skips it")
    parser.add_argument("--rate-seconds", type=float, default=5.0, help="length of the fixed-rate round")
    parser.add_argument("--client", choices=["auto", "wrk", "servestack"], default="auto")
    parser.add_argument("--cpus", default="0,1", help="client+upstream core, proxy core (default 0,1)")
    parser.add_argument("--no-install", action="store_true", help="skip peers whose venvs are not installed yet")
    parser.add_argument("--out", type=Path, help="JSON output (default bench/results/gateway_overhead.json)")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    client_cpus, proxy_cpus = args.cpus.split(",")
    use_wrk = args.client == "wrk" or (args.client == "auto" and wrk_available())
    names = args.targets.split(",") + (["gateway-uvicorn", "gateway-granian"] if args.granian else [])
    stack = args.stack or BENCH_DIR / "stacks" / ("gateway-full.yaml" if args.full else "gateway.yaml")
    label = "servestack" + (" (auth, metrics, usage, routing)" if args.full else "")
    targets = make_targets(names, stack, label)
    modes = args.modes.split(",")
    skipped: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="servestack-overhead-") as tmp:
        upstream = start_upstream(Path(tmp), client_cpus)
        layout = Layout(Path(tmp), upstream_url=f"http://127.0.0.1:{upstream[1]}", client_cpus=client_cpus,
                        proxy_cpus=proxy_cpus, install=not args.no_install)  # fmt: skip
        running = []
        try:
            for target in targets:
                if target.name == "nginx" and shutil.which("nginx") is None:
                    skipped[target.name] = "nginx is not installed (apt-get install -y nginx)"
                    continue
                running.append(target)  # before start: whatever it launched is stopped below, even on errors
                with console.status(f"starting {target.label} …"):
                    try:
                        target.start(layout)
                    except HarnessError as exc:
                        target.stop()
                        running.remove(target)
                        skipped[target.name] = str(exc)
                        console.print(f"[yellow]skipping {target.label}:[/] {exc}", highlight=False)
            results = measure(running, modes, args, use_wrk, client_cpus)
        finally:
            for target in running:
                target.stop()
            upstream[0].stop()
    doc = {
        "machine": machine(),
        "layout": {"client_and_upstream_cpus": client_cpus, "proxy_cpus": proxy_cpus},
        "client": "wrk -t1" if use_wrk else "servestack bench",
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "stack": str(stack),
        "targets": results,
        "skipped": skipped,
    }
    path = write_results("gateway_overhead", doc, args.out)
    render(results, args.rate, args.full)
    console.print(f"[dim]wrote {path}[/]", highlight=False)
    return 0


def start_upstream(tmp: Path, cpus: str) -> tuple[Proc, int]:
    port = free_port()
    argv = [sys.executable, "-m", "servestack.sim", "--instant", "--port", str(port), "--model", "sim"]
    proc = Proc("upstream-sim", argv, tmp, cpus=cpus)
    proc.wait_http(f"http://127.0.0.1:{port}/health")
    return proc, port


def measure(
    targets: list[Target], modes: list[str], args: argparse.Namespace, use_wrk: bool, cpus: str
) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {
        t.name: {"label": t.label, "note": t.note, **{m: {"rounds": []} for m in modes}} for t in targets
    }
    for target in targets:
        if "stream" in modes:
            results[target.name]["stream"]["events_per_answer"] = count_events(target)
    for round_number in range(1, args.rounds + 1):
        for mode in modes:
            for target in targets:
                console.print(f"[dim]round {round_number} · {mode} · {target.label}[/]", highlight=False)
                pids = target.cpu_pids()
                before = cpu_seconds(pids)
                m = one_round(target, BODIES[mode], mode == "stream", args, use_wrk, cpus)
                used = cpu_seconds(pids) - before
                per_cpu = m.requests / used if pids and used > 0 else None
                results[target.name][mode]["rounds"].append({**vars(m), "cpu_seconds": used, "per_cpu_second": per_cpu})
    if args.rate > 0:
        measure_rate(targets, results, args, cpus)
    return results


def measure_rate(
    targets: list[Target], results: dict[str, dict[str, Any]], args: argparse.Namespace, cpus: str
) -> None:
    """Latency at a fixed request rate, in interleaved rounds, for every target that can sustain it."""
    able = []
    for target in targets:
        rounds = results[target.name].get("whole", {}).get("rounds") or []
        best = max((r["rps"] for r in rounds), default=float("inf"))
        if best < 1.2 * args.rate:
            results[target.name]["rate"] = {"skipped": f"saturates at {best:.0f} req/s, below {args.rate:g}"}
        else:
            results[target.name]["rate"] = {"rounds": []}
            able.append(target)
    for round_number in range(1, args.rounds + 1):
        for target in able:
            console.print(f"[dim]round {round_number} · {args.rate:g} req/s · {target.label}[/]", highlight=False)
            m = run_servestack_bench(
                target.url, model="sim", api_key=target.api_key, stream=False, seconds=args.rate_seconds,
                cpus=cpus, rate=args.rate, warmup=200,
            )  # fmt: skip
            results[target.name]["rate"]["rounds"].append(vars(m))


def one_round(
    target: Target, body: bytes, stream: bool, args: argparse.Namespace, use_wrk: bool, cpus: str
) -> Measurement:
    if use_wrk:
        return run_wrk(
            target.url, body, api_key=target.api_key, seconds=args.seconds, connections=args.connections, cpus=cpus
        )
    return run_servestack_bench(
        target.url, model="sim", api_key=target.api_key, stream=stream, seconds=args.seconds, cpus=cpus,
        connections=args.connections,
    )  # fmt: skip


def count_events(target: Target) -> int:
    """SSE data events in one streamed answer through `target` (its [DONE] excluded)."""
    headers = {"Content-Type": "application/json"}
    if target.api_key:
        headers["Authorization"] = f"Bearer {target.api_key}"
    request = urllib.request.Request(target.url, data=BODIES["stream"], headers=headers)
    with urllib.request.urlopen(request, timeout=30) as response:
        text = response.read().decode()
    return sum(1 for line in text.splitlines() if line.startswith("data:") and line.strip() != "data: [DONE]")


def summary(rounds: list[dict[str, Any]], key: str) -> float:
    values = [r[key] for r in rounds if r.get(key) is not None]
    return statistics.median(values) if values else float("nan")


def render(results: dict[str, dict[str, Any]], rate: float, full: bool = False) -> None:
    console.print(throughput_table(results))
    console.print(latency_table(results, rate))
    console.print(
        "[dim]req/CPU-s: requests per CPU-second the proxy's processes used (its capacity per core on an idle "
        "machine; robust to noise). +pXX: the target's percentile minus the direct upstream's, in ms; at a fixed "
        "concurrency it includes queueing behind a saturated proxy. Ranges: min–max over rounds.[/]"
    )
    for line in verdicts(results, full):
        console.print(line, highlight=False)


def throughput_table(results: dict[str, dict[str, Any]]) -> Table:
    table = Table(title="Throughput (proxy pinned to one core)", header_style="bold", title_justify="left")
    for column in ("target", "req/s", "req/CPU-s", "stream req/s", "chunks/s", "chunks/CPU-s"):
        table.add_column(column, justify="left" if column == "target" else "right")
    for result in results.values():
        row = [result["label"]]
        for mode in ("whole", "stream"):
            rounds = result.get(mode, {}).get("rounds") or []
            events = result.get(mode, {}).get("events_per_answer", 1)
            rps = [r["rps"] for r in rounds]
            if not rps:
                row += ["-", "-"] if mode == "whole" else ["-", "-", "-"]
                continue
            text = f"{summary(rounds, 'rps'):,.0f}"
            row.append(text + (f" ({min(rps):,.0f}–{max(rps):,.0f})" if len(rps) > 1 else ""))
            if mode == "stream":
                row.append(f"{events * summary(rounds, 'rps'):,.0f}")
            per_cpu = summary(rounds, "per_cpu_second")
            row.append("-" if per_cpu != per_cpu else f"{per_cpu * (events if mode == 'stream' else 1):,.0f}")
        table.add_row(*row)
    return table


def latency_table(results: dict[str, dict[str, Any]], rate: float) -> Table:
    direct = results.get("direct", {})
    table = Table(title="Added latency (ms)", header_style="bold", title_justify="left")
    columns = ["target", "+p50", "+p99", "+p50 stream", "+p99 stream"]
    columns += [f"+p50 @{rate:g}/s", f"+p99 @{rate:g}/s"] if rate > 0 else []
    for column in columns:
        table.add_column(column, justify="left" if column == "target" else "right")
    for name, result in results.items():
        row = [result["label"]]
        for mode in ("whole", "stream"):
            rounds = result.get(mode, {}).get("rounds") or []
            base = direct.get(mode, {}).get("rounds") or []
            row += [_added(rounds, base, key, name) for key in ("p50_ms", "p99_ms")]
        if rate > 0:
            row += _rate_cells(result.get("rate"), direct.get("rate"), name)
        table.add_row(*row)
    return table


def verdicts(results: dict[str, dict[str, Any]], full: bool = False) -> list[str]:
    """servestack (either build) against the issues' targets: ≥1.0x the SGLang router (≥1.2x with everything
    on, `--full`: issue 14), ≥0.7x nginx, streams ≥0.8x nginx."""
    lines = []
    checks = [("sglang-router", "whole", 1.2 if full else 1.0), ("nginx", "whole", 0.7), ("nginx", "stream", 0.8)]
    for name in ("servestack", "servestack-compiled"):
        ours = results.get(name)
        for peer, mode, target in checks:
            if ours is None or peer not in results or mode not in ours:
                continue
            for key, what in (("rps", "req/s"), ("per_cpu_second", "req/CPU-s")):
                ratios = paired_ratios(ours[mode]["rounds"], results[peer][mode]["rounds"], key)
                if ratios:
                    ratio = statistics.median(ratios)
                    mark = "[green]meets[/]" if ratio >= target else "[red]misses[/]"
                    spread = f"{min(ratios):.2f}–{max(ratios):.2f} over {len(ratios)} rounds"
                    verdict = f"{ratio:.2f}x ({spread}; target >= {target}x: {mark})"
                    lines.append(f"{name} / {peer} ({mode}, {what}): {verdict}")
    return lines


def paired_ratios(ours: list[dict[str, Any]], theirs: list[dict[str, Any]], key: str) -> list[float]:
    """Per round, `key` of ours over theirs: the targets of a round run seconds apart, so a noisy minute
    weighs on both sides of each ratio (the verdict is their median, not the ratio of two medians)."""
    return [a[key] / b[key] for a, b in zip(ours, theirs, strict=False) if a.get(key) and b.get(key)]


def _added(rounds: list[dict[str, Any]], base: list[dict[str, Any]], key: str, name: str) -> str:
    if not rounds:
        return "-"
    if name == "direct" or not base:
        return f"({summary(rounds, key):.2f})"
    return f"{summary(rounds, key) - summary(base, key):+.2f}"


def _rate_cells(result: dict[str, Any] | None, direct: dict[str, Any] | None, name: str) -> list[str]:
    rounds = (result or {}).get("rounds") or []
    base = (direct or {}).get("rounds") or []
    if not rounds:
        return ["n/a", "n/a"]
    if name == "direct" or not base:
        return [f"({summary(rounds, k):.2f})" for k in ("p50_ms", "p99_ms")]
    return [f"{summary(rounds, k) - summary(base, k):+.2f}" for k in ("p50_ms", "p99_ms")]


if __name__ == "__main__":
    sys.exit(main())
