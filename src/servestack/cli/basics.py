"""`init`, `version` and `env`: getting started and knowing what you run."""

from __future__ import annotations

from pathlib import Path

import typer

from servestack.cli.app import DEFAULT_STACK_FILE, app, console, identifier_column, print_table
from servestack.errors import StateError


@app.command()
def init(
    path: Path = typer.Argument(DEFAULT_STACK_FILE, help="Where to write the stack file."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
) -> None:
    """Write the default stack (SmolLM2 on llama.cpp, with comments) as a starting point."""
    from servestack.stack import default_stack_text

    if path.exists() and not force:
        raise StateError(f"{path} already exists", fix="use --force to overwrite it")
    path.write_text(default_stack_text())
    console.print(f"wrote {path}; `servestack up -f {path}` runs it")


@app.command()
def version() -> None:
    """Print servestack's version."""
    import servestack

    typer.echo(f"servestack {servestack.__version__}")


@app.command()
def env() -> None:
    """List the SERVESTACK_* environment variables servestack reads, with their defaults."""
    from rich.table import Table

    from servestack.settings import describe_settings

    rows = describe_settings()
    table = Table(box=None, header_style="bold")
    identifier_column(table, "VARIABLE", (name for name, _, _ in rows))
    table.add_column("DEFAULT", overflow="fold")  # a long path folds onto the next line, whole
    table.add_column("MEANING")
    for name, default, meaning in rows:
        table.add_row(name, default, meaning)
    print_table(table)
