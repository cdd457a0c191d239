"""How many requests per second the simulator answers in instant mode — so we know it is not the bottleneck.

Starts `python -m servestack.sim --instant` on a free port (pinned to core 0 when there are two or
more), then drives it from this process (pinned to core 1) with a bounded aiohttp loop: N chat
requests at fixed concurrency, non-streaming and streaming (16 chunks each). When `wrk` is on PATH it
also runs `wrk -t1 -cC` for a few seconds, which is the faster client and so the truer ceiling.
Prints a table and writes JSON to bench/results/sim_throughput.json.

    python bench/sim_throughput.py [--requests 10000] [--concurrency 32] [--wrk-seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import aiohttp

RESULTS = Path(__file__).resolve().parent / "results" / "sim_throughput.json"
BODY = {"model": "sim", "messages": [{"role": "user", "content": "How fast can you answer?"}], "max_tokens": 16}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_sim(port: int, pin: bool) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "servestack.sim", "--instant", "--port", str(port)]
    if pin:
        argv = ["taskset", "-c", "0", *argv]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("the simulator did not start")


async def drive(url: str, requests: int, concurrency: int, stream: bool) -> dict[str, float]:
    """Send `requests` requests, `concurrency` at a time; bounded: every worker stops when the count is reached."""
    body = json.dumps({**BODY, "stream": stream}).encode()
    headers = {"Content-Type": "application/json"}
    latencies: list[float] = []
    failures = 0
    remaining = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal remaining, failures
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            async with session.post(url, data=body, headers=headers) as resp:
                await resp.read()
                failures += resp.status != 200
            latencies.append(time.perf_counter() - started)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        remaining = 2 * concurrency
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))  # open the connections
        remaining, latencies, failures = requests, [], 0
        started = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "requests": requests,
        "failures": failures,
        "seconds": round(elapsed, 3),
        "requests_per_s": round(requests / elapsed),
        "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 2),
    }


def run_wrk(url: str, concurrency: int, seconds: int, pin: bool) -> dict[str, float] | None:
    wrk = shutil.which("wrk")
    if wrk is None:
        return None
    script = "\n".join(
        [
            'wrk.method = "POST"',
            f"wrk.body = {json.dumps(json.dumps(BODY))}",
            'wrk.headers["Content-Type"] = "application/json"',
        ]
    )
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lua:
        lua.write(script)
    argv = [wrk, "-t1", f"-c{concurrency}", f"-d{seconds}s", "--latency", "-s", lua.name, url]
    if pin:
        argv = ["taskset", "-c", "1", *argv]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=seconds + 30).stdout
    finally:
        os.unlink(lua.name)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)\b", out)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "seconds": seconds,
        "requests_per_s": round(float(rate.group(1))) if rate else 0,
        "p50_ms": _ms(p50),
        "p99_ms": _ms(p99),
        "failures": int(errors.group(1)) if errors else 0,
    }


def _ms(match: re.Match[str] | None) -> float:
    if match is None:
        return float("nan")
    value, unit = float(match.group(1)), match.group(2)
    return round(value * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit], 3)


def run(coro: Coroutine[Any, Any, dict[str, float]]) -> dict[str, float]:
    """Run the client loop on uvloop when it is there (the stdlib loop makes the client the bottleneck)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def machine() -> dict[str, object]:
    cpu = platform.processor()
    with open("/proc/cpuinfo") as info:
        names = [line.split(":", 1)[1].strip() for line in info if line.startswith("model name")]
    return {
        "cpu": names[0] if names else cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "load_average_1m_before": round(os.getloadavg()[0], 2),  # other work on the machine skews the figures
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--wrk-seconds", type=int, default=5)
    args = parser.parse_args()
    pin = (os.cpu_count() or 1) >= 2 and shutil.which("taskset") is not None
    if pin:
        os.sched_setaffinity(0, {1})
    host = machine()
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    sim = start_sim(port, pin)
    try:
        results = {
            "aiohttp_non_streaming": run(drive(url, args.requests, args.concurrency, stream=False)),
            "aiohttp_streaming_16_chunks": run(drive(url, args.requests, args.concurrency, stream=True)),
        }
        if (wrk := run_wrk(url, args.concurrency, args.wrk_seconds, pin)) is not None:
            results["wrk_non_streaming"] = wrk
    finally:
        sim.terminate()
        sim.wait(10)
    placement = "sim on core 0, client on core 1" if pin else "unpinned"
    print(f"simulator in instant mode, concurrency {args.concurrency}, {placement}")
    print(f"{'client':<30} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'failed':>7}")
    for name, row in results.items():
        print(f"{name:<30} {row['requests_per_s']:>8} {row['p50_ms']:>8} {row['p99_ms']:>8} {row['failures']:>7}")
    RESULTS.parent.mkdir(exist_ok=True)
    report = {"benchmark": "sim_throughput", "concurrency": args.concurrency, "pinned": pin, "machine": host,
              "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "results": results}  # fmt: skip
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
