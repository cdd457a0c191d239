"""`servestack usage`: totals from the gateway's usage ledger, by key or by model."""

from __future__ import annotations

import time
from dataclasses import asdict

import orjson
import typer

from servestack.cli.app import app, console, settings
from servestack.cli.when import parse_when


@app.command()
def usage(
    by: str = typer.Option("key", "--by", help="Group by `key` or `model`."),
    since: str | None = typer.Option(None, "--since", help="1h, 7d, or a date such as 2026-01-31."),
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
) -> None:
    """Requests and tokens per key or model, from the usage ledger (estimated counts are marked)."""
    from rich.table import Table

    from servestack.gateway.telemetry.usage import GroupBy, UsageLedger

    if by not in ("key", "model"):
        raise typer.BadParameter("--by is key or model")
    group: GroupBy = "model" if by == "model" else "key"
    start = parse_when(since, time.time(), future=False) if since else None
    path = settings().usage_db
    if not path.is_file():
        if as_json:
            typer.echo("[]")
        else:
            console.print("no usage recorded yet (the gateway writes it while it serves)")
        return
    ledger = UsageLedger(path, readonly=True)
    try:
        totals = ledger.totals(group, start)
    finally:
        ledger.db.close()
    if as_json:
        typer.echo(orjson.dumps([asdict(t) for t in totals]).decode())
        return
    table = Table(box=None, header_style="bold")
    for column in (by.upper(), "REQUESTS", "ERRORS", "PROMPT", "COMPLETION", "TOTAL", "ESTIMATED", "TTFT", "DURATION"):
        table.add_column(column, justify="left" if column == by.upper() else "right")
    for t in totals:
        table.add_row(
            t.group,
            str(t.requests),
            str(t.errors),
            str(t.prompt_tokens),
            str(t.completion_tokens),
            str(t.prompt_tokens + t.completion_tokens),
            str(t.estimated) if t.estimated else "-",
            _ms(t.mean_ttft),
            _ms(t.mean_duration),
        )
    console.print(table)
    if any(t.estimated for t in totals):
        console.print("ESTIMATED: requests whose engine reported no token counts (streams from llama.cpp)", style="dim")


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f} ms"
