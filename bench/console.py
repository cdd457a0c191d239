"""The web console's cost: page load against a 64-replica stack, and the request path with the console open.

    python bench/console.py                                  # 64 replicas, 5 loads, 4 rounds
    python bench/console.py --replicas 64 --rounds 3 --seconds 8 --idle-seconds 20 --rate 300 --json out.json

One `servestack up -d` of simulators in instant mode (8 services, REPLICAS/8 replicas each; auth off, so
the page needs no login), then, in Debian's Chromium driven by playwright:

    page load     a fresh browser context opens /ui/ LOADS times: first contentful paint, and the moment
                  the overview shows every replica's row (the page's first useful paint); also the size
                  of /admin/overview and how long the gateway takes to answer it
    console       each round measures the console closed, or open on the overview (it polls
                  /admin/overview and /admin/actions every second), on the traffic page (/admin/traffic
                  every second), or following a service's logs (SSE; the gateway reads its log files 4
                  times a second), three ways:
      idle        the controller's CPU (ms per second) with no traffic, for IDLE_SECONDS (CPU time comes
                  in 10 ms ticks)
      at a rate   the same while `servestack bench --rate RATE` sends whole chats for SECONDS
      flat out    `wrk -t1 -c32` for SECONDS: requests/s, and requests per CPU second of the controller
                  The console's CPU (open minus closed) over 1000 ms/s is the share of a saturated
                  one-core gateway's requests/s it would take.

Layout (2 cores): the controller (gateway, control socket, supervisor: one process) is pinned to core 1;
the load clients, the simulators and Chromium share core 0. Chromium rendering a page every second takes CPU from
the load generator on core 0, which a browser on the user's own machine does not, and on a machine
shared with other work requests/s moves by more than the console does; so the console's cost is read
from the controller's CPU. Rounds interleave the conditions, each round starting with another one, so a
noisy minute hurts all alike; the machine's load average is in the JSON.

Prints a table and writes bench/results/console.json (or --json).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, Page, sync_playwright
from rich.console import Console
from rich.table import Table

from harness.clients import Measurement, run_servestack_bench, run_wrk
from harness.output import machine, write_results
from harness.procs import cpu_seconds, free_port, pin

CHROMIUM = "/usr/bin/chromium"
SERVICES = 8
GATEWAY_CPUS, REST_CPUS = "1", "0"
BODY = b'{"model":"s0","max_tokens":16,"messages":[{"role":"user","content":"Say hello to the benchmark."}]}'
PAGES = {
    "closed": None,
    "overview open": "#/overview",
    "traffic open": "#/traffic",
    "logs open": "#/logs?service=s0",
}
console = Console(width=None if sys.stdout.isatty() else 160)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replicas", type=int, default=64, help="replicas in all (default 64)")
    parser.add_argument("--loads", type=int, default=5, help="page loads to time (default 5)")
    parser.add_argument("--rounds", type=int, default=4, help="rounds of every condition (default 4)")
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds of load per condition (default 8)")
    parser.add_argument("--idle-seconds", type=float, default=20.0, help="seconds of each CPU reading (default 20)")
    parser.add_argument("--rate", type=float, default=300.0, help="the fixed request rate (default 300 req/s)")
    parser.add_argument("--json", type=Path, default=None, help="where to write the results")
    return parser.parse_args()


def stack_text(port: int, replicas: int) -> str:
    per = max(1, replicas // SERVICES)
    services = "".join(
        f"  s{i}:\n    engine: sim\n    model: s{i}\n    replicas: {per}\n    args: ['--instant']\n"
        for i in range(SERVICES)
    )
    return f"version: 1\ngateway:\n  port: {port}\nservices:\n{services}"


class Instance:
    """`servestack up -d` of the stack in a temporary SERVESTACK_HOME; `down` at the end."""

    def __init__(self, tmp: Path, replicas: int) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "SERVESTACK_HOME": str(tmp / "home")}
        stack = tmp / "stack.yaml"
        stack.write_text(stack_text(self.port, replicas))
        started = time.monotonic()
        self._cli("up", "-d", "-f", str(stack), timeout=900)
        self.up_seconds = time.monotonic() - started
        status = json.loads(self._cli("status", "--json").stdout)
        self.pid = int(status["instance"]["pid"])
        self.replicas = len(status["services"])

    def _cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "servestack", *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if result.returncode != 0:
            raise SystemExit(f"servestack {args[0]} failed:\n{result.stdout}{result.stderr}")
        return result

    def controller_cpu(self) -> float:
        return cpu_seconds([self.pid])

    def down(self) -> None:
        self._cli("down", timeout=300)


def time_page_loads(browser: Browser, url: str, replicas: int, loads: int) -> list[dict[str, float]]:
    """Each load in a fresh context (empty cache): first contentful paint and every row shown, in ms."""
    runs = []
    for _ in range(loads):
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        page = context.new_page()
        page.goto(url + "/ui/")
        shown = page.wait_for_function(
            "(n) => document.querySelectorAll('tr.replica').length >= n && performance.now()",
            arg=replicas,
            polling="raf",
            timeout=60_000,
        ).json_value()
        paint = page.evaluate("() => performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? null")
        runs.append({"first_contentful_paint_ms": paint, "all_rows_ms": shown})
        context.close()
    return runs


def time_overview(url: str, count: int = 30) -> dict[str, float]:
    """What one poll of the overview costs: its size and the gateway's answer time (median of `count`)."""
    seconds, size = [], 0
    for _ in range(count):
        started = time.perf_counter()
        with urllib.request.urlopen(url + "/admin/overview", timeout=10) as response:
            size = len(response.read())
        seconds.append(time.perf_counter() - started)
    return {"bytes": size, "median_ms": 1000 * statistics.median(seconds), "max_ms": 1000 * max(seconds)}


def open_console(browser: Browser, url: str, fragment: str) -> Page:
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(f"{url}/ui/{fragment}")
    page.wait_for_selector("tr.replica, svg.chart, .log .line", timeout=30_000)
    return page


def with_console(
    browser: Browser, instance: Instance, condition: str, work: Callable[[], Measurement | None]
) -> tuple[Measurement | None, float]:
    """Run `work` with the console closed or open on a page; what it measured, and the controller's CPU in ms
    per second of wall time meanwhile."""
    fragment = PAGES[condition]
    page = open_console(browser, instance.url, fragment) if fragment is not None else None
    try:
        time.sleep(1.0)  # the page's first polls are behind it
        before, started = instance.controller_cpu(), time.monotonic()
        measured = work()
        return measured, 1000 * (instance.controller_cpu() - before) / (time.monotonic() - started)
    finally:
        if page is not None:
            page.close()


def measure_round(browser: Browser, instance: Instance, condition: str, args: argparse.Namespace) -> dict[str, float]:
    """One round of one condition: idle, at a fixed request rate, and closed-loop (wrk)."""
    url = instance.url + "/v1/chat/completions"
    _, idle = with_console(browser, instance, condition, lambda: time.sleep(args.idle_seconds))
    paced, at_rate = with_console(
        browser,
        instance,
        condition,
        lambda: run_servestack_bench(
            instance.url, model="s0", api_key=None, stream=False, seconds=args.seconds, cpus=REST_CPUS, rate=args.rate
        ),
    )
    flat_out, busy = with_console(
        browser,
        instance,
        condition,
        lambda: run_wrk(url, BODY, api_key=None, seconds=args.seconds, connections=32, cpus=REST_CPUS),
    )
    assert paced is not None and flat_out is not None
    return {
        "idle_cpu_ms_per_s": idle,
        "rate_rps": paced.rps,
        "rate_cpu_ms_per_s": at_rate,
        "rate_errors": paced.errors,
        "rps": flat_out.rps,
        "errors": flat_out.errors,
        "p50_ms": flat_out.p50_ms,
        "p99_ms": flat_out.p99_ms,
        "per_cpu_second": flat_out.rps / (busy / 1000) if busy > 0 else 0.0,
    }


def summarise(rounds: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Medians per condition; the console's CPU and requests/s against closed."""

    def median(condition: str, key: str) -> float:
        return statistics.median(r[key] for r in rounds[condition])

    summary = {}
    for condition in rounds:
        summary[condition] = {
            key: median(condition, key)
            for key in ("idle_cpu_ms_per_s", "rate_rps", "rate_cpu_ms_per_s", "rps", "per_cpu_second")
        }
        summary[condition].update(
            # The console's CPU over 1000 ms/s: the share of a saturated one-core gateway's requests it would take.
            idle_share_pct=(summary[condition]["idle_cpu_ms_per_s"] - median("closed", "idle_cpu_ms_per_s")) / 10,
            rate_share_pct=(summary[condition]["rate_cpu_ms_per_s"] - median("closed", "rate_cpu_ms_per_s")) / 10,
            rps_change_pct=100 * (summary[condition]["rps"] / median("closed", "rps") - 1),
            per_cpu_second_change_pct=100
            * (summary[condition]["per_cpu_second"] / median("closed", "per_cpu_second") - 1),
            errors=sum(r["errors"] + r["rate_errors"] for r in rounds[condition]),
        )
    return summary


def print_tables(doc: dict[str, Any]) -> None:
    loads = Table(title=f"Page load, {doc['replicas']} replicas ({doc['loads']} fresh loads)")
    for column in ("", "median ms", "max ms"):
        loads.add_column(column, justify="right" if column else "left")
    for key, label in (("first_contentful_paint_ms", "first contentful paint"), ("all_rows_ms", "every row shown")):
        values = [run[key] for run in doc["page_loads"]]
        loads.add_row(label, f"{statistics.median(values):.0f}", f"{max(values):.0f}")
    overview = doc["overview_poll"]
    loads.add_row("one /admin/overview answer", f"{overview['median_ms']:.1f}", f"{overview['max_ms']:.1f}")
    console.print(loads)
    console.print(f"/admin/overview: {overview['bytes']:,} bytes for {doc['replicas']} replicas")

    title = f"The controller with the console closed or open, medians of {doc['rounds']} rounds"
    path = Table(title=title)
    columns = (
        ("console", "left"),
        ("idle CPU ms/s", "right"),
        ("console's share", "right"),
        (f"at {doc['rate']:g} req/s: CPU ms/s", "right"),
        ("console's share", "right"),
        ("wrk req/s", "right"),
        ("change", "right"),
        ("req per CPU s", "right"),
        ("change", "right"),
        ("errors", "right"),
    )
    for column, justify in columns:
        path.add_column(column, justify=justify)  # type: ignore[arg-type]
    for condition, row in doc["summary"].items():
        path.add_row(
            condition,
            f"{row['idle_cpu_ms_per_s']:.1f}",
            f"{row['idle_share_pct']:+.2f}%",
            f"{row['rate_cpu_ms_per_s']:.1f}",
            f"{row['rate_share_pct']:+.2f}%",
            f"{row['rps']:,.0f}",
            f"{row['rps_change_pct']:+.1f}%",
            f"{row['per_cpu_second']:,.0f}",
            f"{row['per_cpu_second_change_pct']:+.1f}%",
            f"{row['errors']:.0f}",
        )
    console.print(path)


def main() -> None:
    args = parse_args()
    os.sched_setaffinity(0, {int(REST_CPUS)})  # wrk, the engines and Chromium inherit core 0
    with tempfile.TemporaryDirectory(prefix="bench-console-") as tmp:
        console.print(f"starting {args.replicas} simulator replicas (servestack up -d)…")
        instance = Instance(Path(tmp), args.replicas)
        try:
            pin(instance.pid, GATEWAY_CPUS)  # its engines stay on core 0, where it started them
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM)
                page_loads = time_page_loads(browser, instance.url, instance.replicas, args.loads)
                overview = time_overview(instance.url)
                rounds: dict[str, list[dict[str, float]]] = {c: [] for c in PAGES}
                names = list(PAGES)
                for number in range(args.rounds):
                    for condition in names[number % len(names) :] + names[: number % len(names)]:  # each first once
                        rounds[condition].append(measure_round(browser, instance, condition, args))
                        console.print(f"round {number + 1}: {condition}: {rounds[condition][-1]}")
                browser.close()
        finally:
            instance.down()
    doc = {
        "machine": machine(),
        "layout": {"controller_cpus": GATEWAY_CPUS, "clients_engines_chromium_cpus": REST_CPUS},
        "replicas": instance.replicas,
        "up_seconds": instance.up_seconds,
        "loads": args.loads,
        "rounds": args.rounds,
        "seconds": args.seconds,
        "idle_seconds": args.idle_seconds,
        "rate": args.rate,
        "page_loads": page_loads,
        "overview_poll": overview,
        "rounds_by_condition": rounds,
        "summary": summarise(rounds),
    }
    print_tables(doc)
    console.print(f"wrote {write_results('console', doc, args.json)}")


if __name__ == "__main__":
    main()
