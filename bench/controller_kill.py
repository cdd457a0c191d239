"""Orphans after a killed controller: `kill -9` of `servestack up` at random moments, then `servestack down`.

    python bench/controller_kill.py                # 50 trials, half during start-up, half under load
    python bench/controller_kill.py --trials 10 --seed 7

Each trial (bench/harness/controller_kill.py) starts `servestack up` on simulated engines in a
fresh state dir, SIGKILLs it during start-up or under load, and records: whether the gateway port
refused connections right after the kill, the engines still alive a while later (they must die
with their controller), and any process of the state dir left after `servestack down`. Prints a
table and writes bench/results/controller_kill.json (or --out).
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from harness.controller_kill import ENGINE_GRACE, TrialResult, run_trial
from harness.output import machine, write_results
from harness.procs import free_port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    console = Console(width=120)
    rng = random.Random(args.seed)
    results: list[TrialResult] = []
    with tempfile.TemporaryDirectory(prefix="controller-kill-") as tmp:
        for n in range(args.trials):
            phase = "startup" if n % 2 == 0 else "load"
            workdir = Path(tmp) / f"trial-{n}"
            workdir.mkdir()
            result = run_trial(workdir, phase, rng, free_port())
            results.append(result)
            console.print(
                f"trial {n + 1:>2}/{args.trials} {phase:<7} kill at {result.kill_after:5.2f}s: "
                f"{result.engines_at_kill} engines ({result.unrecorded_at_kill} unrecorded), "
                f"port {'refused' if result.port_refused else 'ACCEPTED'}, "
                f"{result.engines_after_grace} left before down, {result.leftovers_after_down} after down"
            )
    console.print(summary_table(results))
    doc = {
        "machine": machine(),
        "seed": args.seed,
        "summary": summarize(results),
        "trials": [r.as_dict() for r in results],
    }
    console.print(f"wrote {write_results('controller_kill', doc, args.out)}")


def summarize(results: list[TrialResult]) -> dict[str, dict[str, object]]:
    rows: dict[str, dict[str, object]] = {}
    for phase in ("startup", "load", "all"):
        chosen = [r for r in results if phase in ("all", r.phase)]
        gone = [r.engines_gone_after for r in chosen if r.engines_gone_after is not None and r.engines_at_kill]
        rows[phase] = {
            "trials": len(chosen),
            "with_engines_at_kill": sum(r.engines_at_kill > 0 for r in chosen),
            "with_unrecorded_engine_at_kill": sum(r.unrecorded_at_kill > 0 for r in chosen),
            "port_accepted_after_kill": sum(not r.port_refused for r in chosen),
            "engines_left_before_down": sum(r.engines_after_grace > 0 for r in chosen),
            "leftovers_after_down": sum(r.leftovers_after_down > 0 for r in chosen),
            "engines_gone_median_s": round(statistics.median(gone), 2) if gone else None,
            "engines_gone_max_s": round(max(gone), 2) if gone else None,
        }
    return rows


COLUMNS = (
    ("trials", "trials"),
    ("with_engines_at_kill", "engines up at kill"),
    ("with_unrecorded_engine_at_kill", "unrecorded engine at kill"),
    ("port_accepted_after_kill", "port accepted after kill"),
    ("engines_left_before_down", f"engines alive {ENGINE_GRACE:g}s after kill"),
    ("leftovers_after_down", "leftovers after down"),
    ("engines_gone_median_s", "engines gone, median s"),
    ("engines_gone_max_s", "max s"),
)


def summary_table(results: list[TrialResult]) -> Table:
    """Per phase: how many trials had each thing happen (the last two: seconds until the engines were gone)."""
    table = Table(title="kill -9 of servestack up, then servestack down")
    table.add_column("phase")
    for _, title in COLUMNS:
        table.add_column(title, justify="right", max_width=12)
    for phase, row in summarize(results).items():
        table.add_row(phase, *(str(row[key]) for key, _ in COLUMNS))
    return table


if __name__ == "__main__":
    main()
