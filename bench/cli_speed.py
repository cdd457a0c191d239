"""CLI speed: wall time and CPU seconds of `up -d`, `status`, `ps`, `stop`, `start`, `version`, `--help`, `down`.

    python bench/cli_speed.py                                   # this tree, 5 rounds
    python bench/cli_speed.py --variant before=/tmp/main/src --variant after=src --runs 7

Each round starts the stack in the background (`up -d`; the bundled default stack unless --stack),
runs every other command against it, and stops it (`down`). A command's CPU is its process's user
+ system time (getrusage of the waited-for child), so `up -d` counts the CLI alone, not the
instance it leaves running. Sources are byte-compiled first, as an installed package is. Variants
(a label and a source tree put first on PYTHONPATH) run alternately, round by round, so a busy
machine slows them alike.

Prints medians and writes bench/results/cli_speed.json (or --out).
"""

from __future__ import annotations

import argparse
import compileall
import os
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from harness.output import machine, write_results
from harness.procs import free_port

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Sample:
    wall: float
    cpu: float


def measure(argv: list[str], env: dict[str, str], timeout: float = 900) -> Sample:
    """Run `argv` to its end; its wall time and the CPU seconds it (and what it waited for) used."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"`{shlex.join(argv)}` failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Sample(wall, cpu)


def one_round(src: Path, stack: Path | None, service: str) -> dict[str, Sample]:
    """up -d, the inspecting and steering commands, down; in a fresh state dir."""
    with tempfile.TemporaryDirectory(prefix="cli-speed-") as home:
        env = {**os.environ, "PYTHONPATH": str(src), "SERVESTACK_HOME": home, "COLUMNS": "200"}
        cli = [sys.executable, "-m", "servestack"]
        up = [*cli, "up", "-d", "--port", str(free_port())] + (["-f", str(stack)] if stack else [])
        samples = {"up -d": measure(up, env)}
        try:
            samples["status"] = measure([*cli, "status"], env)
            samples["status --json"] = measure([*cli, "status", "--json"], env)
            if has_ps(src):
                samples["ps"] = measure([*cli, "ps"], env)
            samples["stop"] = measure([*cli, "stop", service], env)
            samples["start"] = measure([*cli, "start", service], env)
            measure([*cli, "start", service], env)
            samples["version"] = measure([*cli, "version"], env)
            samples["--help"] = measure([*cli, "--help"], env)
        finally:
            samples["down"] = measure([*cli, "down"], env)
    return samples


def has_ps(src: Path) -> bool:
    return "def ps(" in (src / "servestack" / "cli" / "inspect.py").read_text()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", action="append", default=[], help="LABEL=SRC_DIR (repeatable)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--stack", type=Path, default=None, help="stack file (default: the bundled default stack)")
    parser.add_argument("--service", default="smollm2", help="the service `stop`/`start` act on")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    variants = dict(v.split("=", 1) for v in args.variant) or {"this tree": str(ROOT / "src")}
    sources = {label: Path(src).resolve() for label, src in variants.items()}
    for src in sources.values():
        compileall.compile_dir(src, quiet=1)
    console = Console(width=120)
    rounds: dict[str, list[dict[str, Sample]]] = {label: [] for label in sources}
    for n in range(args.runs):
        for label, src in sources.items():
            rounds[label].append(one_round(src, args.stack, args.service))
            console.print(f"round {n + 1}/{args.runs} {label}: done")
    medians = {label: medians_of(samples) for label, samples in rounds.items()}
    console.print(table(medians, args.runs))
    doc = {
        "machine": machine(),
        "runs": args.runs,
        "stack": str(args.stack) if args.stack else "the default stack",
        "variants": {label: str(src) for label, src in sources.items()},
        "median": medians,
        "samples": {
            label: [{cmd: {"wall": round(s.wall, 3), "cpu": round(s.cpu, 3)} for cmd, s in r.items()} for r in runs]
            for label, runs in rounds.items()
        },
    }
    console.print(f"wrote {write_results('cli_speed', doc, args.out)}")


def medians_of(rounds: list[dict[str, Sample]]) -> dict[str, dict[str, float]]:
    commands = list(dict.fromkeys(cmd for r in rounds for cmd in r))
    return {
        cmd: {
            "wall": round(statistics.median(r[cmd].wall for r in rounds if cmd in r), 3),
            "cpu": round(statistics.median(r[cmd].cpu for r in rounds if cmd in r), 3),
        }
        for cmd in commands
    }


def table(medians: dict[str, dict[str, dict[str, float]]], runs: int) -> Table:
    out = Table(title=f"servestack CLI, median of {runs} (CPU = user + system seconds of the command's process)")
    out.add_column("command")
    for label in medians:
        out.add_column(f"{label}: CPU s", justify="right")
        out.add_column(f"{label}: wall s", justify="right")
    commands = list(dict.fromkeys(cmd for m in medians.values() for cmd in m))
    for cmd in commands:
        cells = []
        for m in medians.values():
            cells += [f"{m[cmd]['cpu']:.2f}", f"{m[cmd]['wall']:.2f}"] if cmd in m else ["-", "-"]
        out.add_row(cmd, *cells)
    return out


if __name__ == "__main__":
    main()
