"""Ten thousand slow streams through each proxy: how fast they open, and what each chunk costs.

    python bench/streams.py [--streams 9900] [--interval 1] [--seconds 20] [--targets servestack,nginx,sglang-router]

One slow-drip upstream (harness/drip_upstream.py: an endless SSE stream per request, one chunk at
once and then one every `--interval` seconds, each stamped when written) and, in turn, each proxy in
front of it: servestack's gateway as `servestack up` serves it (harness/gateway_server.py), nginx
with `proxy_buffering off`, the SGLang router. The client (harness/stream_client.py) opens
`--streams` streams, at most `--opening` at a time, and holds them all; then it measures for
`--seconds`. The proxy is pinned to one core, the client and the upstream to the other.

Per target:
- opened in: seconds until every stream had its first chunk;
- CPU per stream opened: the proxy's CPU while opening, less what the chunks relayed meanwhile cost
  (at the steady rate measured after), divided by the streams;
- CPU per chunk: the proxy's CPU over the measuring window divided by the chunks relayed in it;
- delay p50/p99: from the upstream writing a chunk to the client reading it, over the window;
- RSS: the proxy's resident memory at the end; errors: streams that did not open or were cut.

The machine's load average is recorded with each target: other work on the machine skews every figure.
Writes bench/results/streams.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from harness.output import machine, write_results
from harness.procs import HarnessError, Proc, cpu_seconds, free_port
from harness.stream_client import StreamRun, chat_request, open_streams
from harness.targets import CHAT_PATH, Layout, Nginx, PythonFloor, PythonLean, ServestackGateway, SglangRouter, Target

BENCH_DIR = Path(__file__).resolve().parent
console = Console(width=None if sys.stdout.isatty() else 160)
TARGETS = {
    "servestack": ServestackGateway,
    "servestack-compiled": lambda: ServestackGateway(compiled=True),
    "nginx": lambda: Nginx(worker_connections=32768),  # client and upstream connections together
    "sglang-router": SglangRouter,
    "python-floor": PythonFloor,  # the least a Python proxy costs: the bound under any Python gateway's figures
    "python-lean": PythonLean,  # servestack's per-request parts without the ASGI shell (an experiment)
}
SETTLE_SECONDS = 2.0  # after the last stream opened, before measuring


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=9900, help="concurrent streams (default 9900)")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between a stream's chunks (default 1)")
    parser.add_argument("--seconds", type=float, default=20.0, help="measuring window once all are open (default 20)")
    parser.add_argument("--opening", type=int, default=256, help="streams being opened at once (default 256)")
    parser.add_argument("--open-timeout", type=float, default=120.0, help="give up opening after this (default 120)")
    parser.add_argument("--targets", default="servestack,nginx,sglang-router")
    parser.add_argument("--cpus", default="0,1", help="client+upstream core, proxy core (default 0,1)")
    parser.add_argument("--out", type=Path, help="JSON output (default bench/results/streams.json)")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    client_cpus, proxy_cpus = args.cpus.split(",")
    os.sched_setaffinity(0, {int(c) for c in client_cpus.split("-")})
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < args.streams + 100:
        raise SystemExit(f"the open-files hard limit ({hard}) is too low for {args.streams} streams")
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="servestack-streams-") as tmp:
        port = free_port()
        upstream = Proc(
            "drip-upstream", [sys.executable, str(BENCH_DIR / "harness" / "drip_upstream.py"), str(port),
                              str(args.interval)], Path(tmp), cpus=client_cpus,
        )  # fmt: skip
        upstream.wait_http(f"http://127.0.0.1:{port}/health")
        layout = Layout(Path(tmp), upstream_url=f"http://127.0.0.1:{port}", client_cpus=client_cpus,
                        proxy_cpus=proxy_cpus)  # fmt: skip
        try:
            for name in args.targets.split(","):
                results[name] = run_target(TARGETS[name](), layout, args)
        finally:
            upstream.stop()
    doc = {"machine": machine(), "settings": {k: str(v) for k, v in vars(args).items()}, "targets": results}
    path = write_results("streams", doc, args.out)
    render(results, args)
    console.print(f"[dim]wrote {path}[/]", highlight=False)
    return 0


def run_target(target: Target, layout: Layout, args: argparse.Namespace) -> dict[str, Any]:
    with console.status(f"starting {target.label} …"):
        try:
            target.start(layout)
        except HarnessError as exc:
            target.stop()
            console.print(f"[yellow]skipping {target.label}:[/] {exc}", highlight=False)
            return {"label": target.label, "skipped": str(exc)}
    try:
        console.print(f"[dim]{target.label}: opening {args.streams} streams …[/]", highlight=False)
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            result = {"label": target.label, **runner.run(measure(target, args))}
        if result.get("errors") or "error" in result:
            console.print(f"[yellow]{target.label} log:[/]\n" + target.procs[0].log_tail(), highlight=False)
        return result
    finally:
        target.stop()


async def measure(target: Target, args: argparse.Namespace) -> dict[str, Any]:
    load_before = os.getloadavg()
    host, port = "127.0.0.1", int(target.url.split(":")[2].split("/")[0])
    run = StreamRun(args.streams)
    pids = target.cpu_pids()
    cpu_start = cpu_seconds(pids)
    try:
        protocols, open_seconds = await asyncio.wait_for(
            open_streams(host, port, chat_request(CHAT_PATH, host, port), run, opening=args.opening),
            args.open_timeout,
        )
    except TimeoutError:
        return {"error": f"not all streams opened in {args.open_timeout:g}s", "opened": run.opened}
    cpu_open = cpu_seconds(pids) - cpu_start
    chunks_while_opening = run.chunks - run.opened  # beyond each stream's first
    await asyncio.sleep(SETTLE_SECONDS)
    cpu_before, chunks_before = cpu_seconds(pids), run.chunks
    run.measuring = True
    began = time.monotonic()
    await asyncio.sleep(args.seconds)
    run.measuring = False
    window = time.monotonic() - began
    cpu_window, chunks = cpu_seconds(pids) - cpu_before, run.chunks - chunks_before
    rss = sum(_rss_bytes(pid) for pid in pids)
    run.closing = True
    for protocol in protocols:
        protocol.close()
    await asyncio.sleep(1.0)  # the proxy closes its upstream connections
    per_chunk = cpu_window / chunks if chunks else float("nan")
    delays = sorted(run.delays)
    return {
        "streams": args.streams,
        "opened": run.opened,
        "open_seconds": open_seconds,
        "cpu_open_seconds": cpu_open,
        "cpu_per_stream_opened_ms": 1000 * max(0.0, cpu_open - chunks_while_opening * per_chunk) / args.streams,
        "chunks_per_second": chunks / window,
        "cpu_window_seconds": cpu_window,
        "cpu_per_chunk_us": 1e6 * per_chunk,
        "delay_p50_ms": 1000 * _percentile(delays, 0.50),
        "delay_p99_ms": 1000 * _percentile(delays, 0.99),
        "delay_max_ms": 1000 * delays[-1] if delays else float("nan"),
        "rss_mib": rss / 2**20,
        "errors": run.errors,
        "failed": run.failed,
        "cut": run.cut,
        "why_failed": run.statuses,
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
    }


def _loop_factory() -> Any:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(q * len(values)))]


def _rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


COLUMNS = [
    ("opened in (s)", "open_seconds", "{:.1f}"),
    ("CPU/stream opened (ms)", "cpu_per_stream_opened_ms", "{:.2f}"),
    ("CPU/chunk (µs)", "cpu_per_chunk_us", "{:.0f}"),
    ("chunks/s", "chunks_per_second", "{:,.0f}"),
    ("delay p50 (ms)", "delay_p50_ms", "{:.1f}"),
    ("delay p99 (ms)", "delay_p99_ms", "{:.1f}"),
    ("RSS (MiB)", "rss_mib", "{:.0f}"),
    ("errors", "errors", "{}"),
]


def render(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> None:
    title = f"{args.streams:,} streams, a chunk every {args.interval:g}s each (proxy pinned to one core)"
    table = Table(title=title, header_style="bold", title_justify="left")
    table.add_column("target")
    for header, _, _ in COLUMNS:
        table.add_column(header, justify="right")
    table.add_column("load avg (1 min) before→after", justify="right")
    for result in results.values():
        if "skipped" in result or "error" in result:
            table.add_row(result["label"], result.get("skipped") or result["error"], *[""] * len(COLUMNS))
            continue
        cells = [fmt.format(result[key]) for _, key, fmt in COLUMNS]
        table.add_row(result["label"], *cells, f"{result['load_before'][0]:.1f}→{result['load_after'][0]:.1f}")
    console.print(table)
    for line in verdicts(results):
        console.print(line, highlight=False)


def verdicts(results: dict[str, dict[str, Any]]) -> list[str]:
    """servestack (either build) against the issue's targets."""
    nginx, router = results.get("nginx", {}), results.get("sglang-router", {})
    lines = []
    for name in ("servestack", "servestack-compiled"):
        ours = results.get(name, {})
        if "open_seconds" in ours:
            lines += [f"{name}: {line}" for line in _verdicts(ours, nginx, router)]
    return lines


def _verdicts(ours: dict[str, Any], nginx: dict[str, Any], router: dict[str, Any]) -> list[str]:
    checks: list[tuple[str, bool | None]] = [
        ("opened in <= 2x nginx's time", _cmp(ours, nginx, "open_seconds", lambda a, b: a <= 2 * b)),
        ("CPU per relayed chunk <= the router's", _cmp(ours, router, "cpu_per_chunk_us", lambda a, b: a <= b)),
        ("chunk delay p99 <= 100 ms", ours["delay_p99_ms"] <= 100),
        ("chunk delay p50 within 5 ms of nginx's", _cmp(ours, nginx, "delay_p50_ms", lambda a, b: a - b <= 5)),
        ("0 errors", ours["errors"] == 0),
        ("RSS <= 1 GiB", ours["rss_mib"] <= 1024),
    ]
    return [
        f"{what}: " + ("[green]met[/]" if ok else "[red]missed[/]" if ok is not None else "[dim]no peer figure[/]")
        for what, ok in checks
    ]


def _cmp(ours: dict[str, Any], peer: dict[str, Any], key: str, ok: Any) -> bool | None:
    if key not in peer:
        return None
    return bool(ok(ours[key], peer[key]))


if __name__ == "__main__":
    sys.exit(main())
