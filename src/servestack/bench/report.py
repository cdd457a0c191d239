"""Presenting a benchmark: rich tables, the JSON document, and notes on how figures were obtained."""

from __future__ import annotations

import datetime as dt
import platform
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson
from rich.table import Table

from servestack import __version__
from servestack.bench.stats import Distribution, Slo, Summary

LATENCIES = (("TTFT", "ttft"), ("ITL", "itl"), ("TPOT", "tpot"), ("E2E", "e2e"))


@dataclass(frozen=True)
class BenchConfig:
    """What was run, recorded next to the figures."""

    url: str
    model: str
    stream: bool
    dataset: str
    input_len: int
    output_len: int
    seed: int
    requests: int | None
    duration: float | None
    slo: Slo


def notes(summaries: Sequence[Summary], config: BenchConfig) -> list[str]:
    """Plain-language caveats that belong next to the figures."""
    out = []
    if not config.stream:
        out.append("Not streaming: TTFT is the latency of the whole answer; ITL and TPOT are not measured.")
    estimated = sum(s.without_usage for s in summaries)
    if estimated:
        how = "content chunks" if config.stream else "words of the answer"
        out.append(f"{estimated} answers carried no usage: their output tokens were counted as {how} (an estimate).")
    for summary in summaries:
        for kind, example in summary.error_examples.items():
            out.append(f"{summary.label}: {summary.errors[kind]} × {kind}: {example[:160]}")
    return out


def throughput_table(summaries: Sequence[Summary]) -> Table:
    table = Table(title="Throughput", header_style="bold", title_justify="left")
    for column in ("load", "ok", "errors", "req/s", "out tok/s", "goodput"):
        table.add_column(column, justify="left" if column == "load" else "right")
    for s in summaries:
        goodput = "-" if s.goodput is None else f"{s.goodput:.2f}/s ({100 * (s.goodput_fraction or 0):.0f}%)"
        table.add_row(
            s.label,
            str(s.completed),
            str(sum(s.errors.values())) if s.errors else "0",
            f"{s.request_rate:.2f}",
            f"{s.output_token_rate:.1f}",
            goodput,
        )
    return table


def latency_table(summaries: Sequence[Summary]) -> Table:
    table = Table(title="Latency (ms)", header_style="bold", title_justify="left")
    for column in ("load", "metric", "mean", "p50", "p90", "p99", "max"):
        table.add_column(column, justify="left" if column in ("load", "metric") else "right")
    for s in summaries:
        first = True
        for name, attr in LATENCIES:
            dist: Distribution | None = getattr(s, attr)
            if dist is None:
                continue
            cells = [f"{1000 * v:.2f}" for v in (dist.mean, dist.p50, dist.p90, dist.p99, dist.max)]
            table.add_row(s.label if first else "", name, *cells, end_section=attr == "e2e")
            first = False
    return table


def document(summaries: Sequence[Summary], config: BenchConfig) -> dict[str, Any]:
    """The JSON document `--json` writes: config, machine, one entry per load level, notes (seconds)."""
    return {
        "tool": f"servestack {__version__}",
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
        "config": asdict(config),
        "levels": [s.to_dict() for s in summaries],
        "notes": notes(summaries, config),
    }


def write_json(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
