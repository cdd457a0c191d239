"""Where servestack's gateway spends its time per request, sampled with py-spy under wrk load.

    pip install py-spy            # not a dependency of servestack
    python bench/profile_gateway.py [--seconds 8] [--stack bench/stacks/gateway.yaml]

Runs `servestack up` (pinned to core 1, its simulator moved to core 0 with the client), drives it
with `wrk -t1 -c32` non-streaming and then streaming, records each with `py-spy record`, and
charges every sample to the innermost frame that belongs to a known part: the HTTP server
(uvicorn + httptools), the gateway's handler, the relay's client, JSON parsing, or the event loop
itself (uvloop's C code: socket calls, callbacks). Multiplied by the CPU time per request this
gives microseconds per request for each part. Writes bench/results/profile_gateway.json and the
raw collapsed stacks (flamegraph input) next to it.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from gateway_overhead import BODIES, start_upstream
from harness.clients import run_wrk
from harness.output import RESULTS_DIR, machine, write_results
from harness.procs import HarnessError, cpu_seconds
from harness.targets import BENCH_DIR, Layout, Servestack

# (part, substrings of a frame "function (file:line)"), innermost match wins; order breaks ties.
PARTS = [
    ("JSON parse (orjson)", ("_parse_json_object", "orjson")),
    (
        "relay client (relay/upstream.py, relay/http1.py, relay/connection.py)",
        ("gateway/relay/upstream.py", "gateway/relay/http1.py", "gateway/relay/connection.py"),
    ),
    (
        "keys, limits, usage, metrics (admission/, telemetry/, pipeline)",
        (
            "gateway/admission/",
            "gateway/telemetry/",
            "gateway/edge/pipeline.py",
        ),
    ),
    ("routing and endpoints (fleet/)", ("gateway/fleet/",)),
    ("health probes and scrapes (aiohttp)", ("aiohttp/",)),
    (
        "HTTP server (uvicorn + httptools, edge/protocol.py, corked.py, deadlines.py, listener.py)",
        (
            "uvicorn/",
            "httptools",
            "gateway/edge/protocol.py",
            "gateway/edge/corked.py",
            "gateway/edge/deadlines.py",
            "gateway/edge/listener.py",
        ),
    ),
    ("gateway handler (edge/app.py, edge/lane*.py, surfaces, dispatch)", ("servestack/gateway/", "servestack/asgi.py")),
    ("event loop (uvloop C code, syscalls)", ("asyncio/runners.py", "uvloop")),
]
OTHER = "other (controller, supervisor, asyncio)"
IDLE_POOL_THREAD = "_worker (concurrent/futures/thread.py"  # a pool thread waiting for work
console = Console(width=None if sys.stdout.isatty() else 160)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0, help="load (and sampling) per mode (default 8)")
    parser.add_argument("--stack", type=Path, default=BENCH_DIR / "stacks" / "gateway.yaml")
    parser.add_argument("--compiled", action="store_true", help="the compiled build (setup.py; py-spy --native)")
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second (default 250)")
    parser.add_argument("--out", type=Path, help="JSON output (default bench/results/profile_gateway.json)")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    if shutil.which("py-spy") is None:
        raise SystemExit("py-spy is not installed: pip install py-spy")
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="servestack-profile-") as tmp:
        upstream, port = start_upstream(Path(tmp), "0")
        gateway = Servestack(args.stack, compiled=args.compiled)
        try:
            gateway.start(Layout(Path(tmp), upstream_url=f"http://127.0.0.1:{port}"))
            for mode in ("whole", "stream"):
                console.print(f"[dim]profiling {mode} answers for {args.seconds:g} s …[/]", highlight=False)
                results[mode] = profile(gateway, mode, args)
        finally:
            gateway.stop()
            upstream.stop()
    path = write_results(
        "profile_gateway", {"machine": machine(), "stack": str(args.stack), "modes": results}, args.out
    )
    render(results)
    console.print(f"[dim]wrote {path} and the raw stacks beside it[/]", highlight=False)
    return 0


def profile(gateway: Servestack, mode: str, args: argparse.Namespace) -> dict[str, Any]:
    raw = RESULTS_DIR / f"profile_gateway-{mode}.txt"
    pid = gateway.procs[0].pid
    argv = ["py-spy", "record", "-p", str(pid), "-d", str(int(args.seconds)), "-r", str(args.rate), "-f", "raw"]
    if args.compiled:
        argv.append("--native")  # compiled functions are C frames: without it their samples go to their callers
    spy = subprocess.Popen([*argv, "-o", str(raw)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    pids = gateway.cpu_pids()
    before = cpu_seconds(pids)
    load = run_wrk(gateway.url, BODIES[mode], api_key=gateway.api_key, seconds=args.seconds, connections=32, cpus="0")
    used = cpu_seconds(pids) - before
    _, err = spy.communicate(timeout=args.seconds + 30)
    if spy.returncode != 0 or not raw.exists():
        raise HarnessError(f"py-spy failed: {err.decode(errors='replace')[-500:]}")
    shares = attribute(raw)
    per_request_us = 1e6 * used / max(load.requests, 1)
    return {
        "requests": load.requests,
        "rps": load.rps,
        "cpu_seconds": used,
        "cpu_us_per_request": per_request_us,
        "shares": shares,
        "us_per_request": {part: share * per_request_us for part, share in shares.items()},
        "raw_stacks": str(raw.relative_to(RESULTS_DIR.parent.parent)),
    }


def attribute(raw: Path) -> dict[str, float]:
    """Share of samples per part, each sample charged to its innermost recognised frame."""
    counts: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        frames = stack.split(";")
        # py-spy here cannot tell that such a thread is idle: drop its samples.
        if stack and not frames[-1].startswith(IDLE_POOL_THREAD):
            counts[part_of(frames)] += int(n)
    total = sum(counts.values()) or 1
    return {part: counts[part] / total for part in [p for p, _ in PARTS] + [OTHER] if counts[part]}


def part_of(frames: list[str]) -> str:
    for frame in reversed(frames):
        for part, needles in PARTS:
            if any(needle in frame for needle in needles):
                return part
    return OTHER


def render(results: dict[str, Any]) -> None:
    table = Table(title="Where the gateway's CPU time goes, per request", header_style="bold", title_justify="left")
    table.add_column("part")
    for mode in results:
        table.add_column(f"{mode} %", justify="right")
        table.add_column(f"{mode} µs", justify="right")
    parts = [p for p, _ in PARTS] + [OTHER]
    for part in parts:
        cells = []
        for result in results.values():
            share = result["shares"].get(part, 0.0)
            cells += [f"{100 * share:.1f}", f"{result['us_per_request'].get(part, 0.0):.0f}"]
        if any(c not in ("0.0", "0") for c in cells):
            table.add_row(part, *cells)
    table.add_row(
        "total CPU per request", *[c for r in results.values() for c in ("100", f"{r['cpu_us_per_request']:.0f}")]
    )
    console.print(table)


if __name__ == "__main__":
    sys.exit(main())
