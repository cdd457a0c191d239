"""Swapping on-demand models: two simulator services that cannot be loaded together, traffic alternating between them.

    python bench/swap.py                                  # L = 2 s, rates 0.5, 1, 4 req/s, 30 s each
    python bench/swap.py --load 2 --rates 0.5,2 --duration 20 --json out.json

Each row is one fresh `servestack up --gpus 2xH100` of simulators (`--slow-start L`: a cold load takes
L seconds; `--wake-time L/8`: waking a sleeping engine takes an eighth of that). Requests arrive at a
fixed rate (open loop), alternating between the services, each asking for 16 tokens at 200 tokens/s.

    always        both services `load: always`, each on a GPU of its own: the latency floor
    on-demand     both on GPU 0 (0.6 + 0.5 of it: they exclude each other), `unload: stop`, swap_hold 30 s
    hold 2s       the same with `swap_hold: 2s`
    sleep         the same as on-demand with `unload: sleep` (a swap wakes the other instead of starting it)

The rule that decides swap order is the fairness hold (docs/on-demand.md): a loaded service with traffic
keeps serving until its traffic pauses (no request for 1 s) or a waiting request has waited `swap_hold`;
only then does the other replace it. The rows with 30 s and 2 s show its effect: fewer swaps and longer
waits, or more swaps and shorter ones. Reported per row: requests failed, p50 and p99 latency, swaps
per minute, and the share of the time spent loading (sum of load durations over the run's length).
Results go to `bench/results/swap-<time>.json`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

import aiohttp

from harness.output import machine, write_results
from harness.procs import Proc, free_port

SERVICE = """\
  {name}:
    engine: sim
    model: {name}
    gpus: [{gpu}]
    memory_fraction: {fraction}
    load: {load}
{extra}    args: ["--slow-start", "{slow}", "--wake-time", "{wake}", "--decode-rate", "200", "--max-running", "64"]
"""
MODES = {
    # name: (load, gpus of a and b, swap_hold, unload)
    "always": ("always", (0, 1), None, None),
    "on-demand": ("on-demand", (0, 0), "30s", "stop"),
    "hold 2s": ("on-demand", (0, 0), "2s", "stop"),
    "sleep": ("on-demand", (0, 0), "30s", "sleep"),
}
FRACTIONS = {"a": 0.6, "b": 0.5}


@dataclass
class Row:
    mode: str
    rate: float
    requests: int
    failed: int
    p50: float
    p99: float
    swaps_per_minute: float
    loading_share: float
    loads: int
    wakes: int
    mean_load_seconds: float  # a cold load
    mean_wake_seconds: float


def stack_text(mode: str, port: int, load_seconds: float) -> str:
    load, gpus, hold, unload = MODES[mode]
    gateway = f"gateway:\n  port: {port}\n" + (f"  swap_hold: {hold}\n" if hold else "")
    services = ""
    for name, gpu in zip("ab", gpus, strict=True):
        extra = f"    keep_alive: 10m\n    unload: {unload}\n" if unload else ""
        services += SERVICE.format(
            name=name, gpu=gpu, fraction=FRACTIONS[name], load=load, extra=extra, slow=load_seconds,
            wake=load_seconds / 8,
        )  # fmt: skip
    return f"version: 1\n{gateway}services:\n{services}"


async def one(session: aiohttp.ClientSession, url: str, model: str) -> tuple[float, bool]:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}
    started = time.monotonic()
    try:
        async with session.post(url, json=body, timeout=aiohttp.ClientTimeout(total=300)) as resp:
            await resp.read()
            ok = resp.status == 200
    except (aiohttp.ClientError, TimeoutError):
        ok = False
    return time.monotonic() - started, ok


async def traffic(url: str, rate: float, duration: float) -> list[tuple[float, bool]]:
    async with aiohttp.ClientSession() as session:
        tasks = []
        count = int(rate * duration)
        began = time.monotonic()
        for i in range(count):
            await asyncio.sleep(max(0.0, began + i / rate - time.monotonic()))
            tasks.append(asyncio.create_task(one(session, url + "/v1/chat/completions", "ab"[i % 2])))
        return list(await asyncio.gather(*tasks))


def metric_sum(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        match = re.match(rf"^{name}\{{(.*)\}} (\S+)$", line)
        if match and all(f'{k}="{v}"' in match.group(1) for k, v in labels.items()):
            total += float(match.group(2))
    return total


def run(mode: str, rate: float, duration: float, load_seconds: float, work: Path) -> Row:
    port = free_port()
    home = work / f"{mode.replace(' ', '-')}-{rate}"
    home.mkdir()
    (home / "stack.yaml").write_text(stack_text(mode, port, load_seconds))
    env = {"SERVESTACK_HOME": str(home / "state")}
    argv = [sys.executable, "-m", "servestack", "up", "-f", str(home / "stack.yaml"), "--gpus", "2xH100"]
    up = Proc("up", argv, home, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        up.wait_http(url + "/health", timeout=60)
        if mode == "always":  # the floor: both engines loaded before traffic starts
            asyncio.run(traffic(url, 4, 0.5))
        started = time.monotonic()
        outcomes = asyncio.run(traffic(url, rate, duration))
        elapsed = time.monotonic() - started
        with urllib.request.urlopen(url + "/metrics", timeout=10) as resp:
            metrics = resp.read().decode()
    finally:
        up.stop()
    seconds = sorted(s for s, _ in outcomes)
    loads = metric_sum(metrics, "servestack_model_loads_total", how="cold")
    wakes = metric_sum(metrics, "servestack_model_loads_total", how="wake")
    load_sum = metric_sum(metrics, "servestack_model_load_duration_seconds_sum")
    cold_sum = metric_sum(metrics, "servestack_model_load_duration_seconds_sum", how="cold")
    wake_sum = metric_sum(metrics, "servestack_model_load_duration_seconds_sum", how="wake")
    swaps = metric_sum(metrics, "servestack_model_unloads_total", reason="evicted") + metric_sum(
        metrics, "servestack_model_unloads_total", reason="swapped"
    )
    return Row(
        mode=mode,
        rate=rate,
        requests=len(outcomes),
        failed=sum(not ok for _, ok in outcomes),
        p50=statistics.median(seconds),
        p99=seconds[min(len(seconds) - 1, int(len(seconds) * 0.99))],
        swaps_per_minute=swaps / elapsed * 60,
        loading_share=load_sum / elapsed,
        loads=int(loads),
        wakes=int(wakes),
        mean_load_seconds=cold_sum / loads if loads else 0.0,
        mean_wake_seconds=wake_sum / wakes if wakes else 0.0,
    )


def print_table(rows: list[Row]) -> None:
    header = f"{'mode':<10} {'rate':>5} {'reqs':>5} {'failed':>6} {'p50 s':>7} {'p99 s':>7} {'swaps/min':>9} "
    print(header + f"{'loading':>8} {'cold':>5} {'wakes':>5} {'load s':>7} {'wake s':>7}")
    for r in rows:
        print(
            f"{r.mode:<10} {r.rate:>5g} {r.requests:>5} {r.failed:>6} {r.p50:>7.2f} {r.p99:>7.2f} "
            f"{r.swaps_per_minute:>9.1f} {r.loading_share:>8.0%} {r.loads:>5} {r.wakes:>5} {r.mean_load_seconds:>7.2f} "
            f"{r.mean_wake_seconds:>7.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--load", type=float, default=2.0, help="seconds a cold load takes (L)")
    parser.add_argument("--rates", default="0.5,1,4", help="requests per second, comma-separated")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of traffic per row")
    parser.add_argument("--modes", default=",".join(MODES), help="which rows: " + ", ".join(MODES))
    parser.add_argument("--json", type=Path, default=None, help="where to write the results")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="servestack-swap-") as tmp:
        for rate in rates:
            for mode in args.modes.split(","):
                rows.append(run(mode, rate, args.duration, args.load, Path(tmp)))
                print(f"  {asdict(rows[-1])}", file=sys.stderr)
    print_table(rows)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = write_results(
        f"swap-{stamp}",
        {"machine": machine(), "args": vars(args) | {"json": None}, "rows": [asdict(r) for r in rows]},
        args.json,
    )
    print(f"results: {path}", file=sys.stderr)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
