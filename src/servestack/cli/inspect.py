"""`status` and `ps`: what the running instance is doing, read from the state dir (cli/running.py)."""

from __future__ import annotations

import typer

from servestack.cli.app import app


@app.command()
def status(as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON.")) -> None:
    """Show the running instance and every engine process: state, restarts, last error, recent events."""
    from servestack.cli.running import show_status

    show_status(as_json)


@app.command()
def ps(as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON.")) -> None:
    """List the running services: state, replicas ready, GPUs, ports, uptime."""
    from servestack.cli.running import show_ps

    show_ps(as_json)
