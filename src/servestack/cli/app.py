"""The typer app every command module registers on, and the one place errors become exit codes.

Command modules import at their top only what declaring a command needs (typer, rich's console, this
module): `servestack --help` imports every one of them, and a command's own work imports the rest when it
runs, so each command pays only for itself.
"""

from __future__ import annotations

import os
from collections.abc import Coroutine, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from servestack.errors import EngineError, ServestackError

if TYPE_CHECKING:
    from rich.table import Table

    from servestack.settings import Settings
    from servestack.stack import Stack

app = typer.Typer(
    name="servestack",
    help="Run every LLM you host from one stack file: plan, launch, supervise, serve.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
# Markup is off: messages carry user text (paths, engine log lines, `servestack[llamacpp]`) that rich
# would otherwise read as tags. Styles are given as `style=` or assembled with `styled`.
console = Console(soft_wrap=True, markup=False, highlight=False)
err_console = Console(stderr=True, soft_wrap=True, markup=False, highlight=False)

T = TypeVar("T")

DEFAULT_STACK_FILE = Path("stack.yaml")
UNBOUNDED = 10_000  # a width no table reaches: measures a table's own minimum

StackOption = typer.Option(
    None,
    "--file",
    "-f",
    help="Stack file (default: ./stack.yaml if present, else the bundled default stack).",
)


def settings() -> Settings:
    from servestack.settings import load_settings

    return load_settings()


def stack_path(path: Path | None) -> Path | None:
    """The stack file meant: the one given, else ./stack.yaml if present, else None (the default stack)."""
    if path is None and DEFAULT_STACK_FILE.is_file():
        return DEFAULT_STACK_FILE
    return path


def engine_environ(path: Path | None) -> dict[str, str]:
    """Where engines' secrets come from: the `.env` beside the stack file, the environment winning."""
    from servestack.stack import read_dotenv

    path = stack_path(path)
    return {**(read_dotenv(path) if path else {}), **os.environ}


def choose_stack(path: Path | None) -> tuple[Stack, str]:
    """The stack to use and a label naming where it came from."""
    from servestack.stack import load_default_stack, load_stack

    path = stack_path(path)
    if path is None:
        return load_default_stack(), "the default stack (SmolLM2-135M on llama.cpp)"
    return load_stack(path), str(path)


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` to completion on a new event loop (uvloop's when installed)."""
    import asyncio

    try:
        import uvloop
    except ImportError:
        with asyncio.Runner() as runner:
            return runner.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def styled(*parts: str | tuple[str, str]) -> Text:
    """One line from plain strings and (text, style) pairs; nothing in it is read as markup."""
    return Text.assemble(*parts)


def identifier_column(table: Table, header: str, values: Iterable[str]) -> None:
    """Add a column whose values are never shortened (ids, names, variables): the other columns wrap instead."""
    width = max([len(header), *(len(value) for value in values)])
    table.add_column(header, no_wrap=True, min_width=width)


def print_table(table: Table, out: Console | None = None) -> None:
    """Print `table` no narrower than its longest words, so no cell is cut short: on a terminal too narrow for
    that, its rows run past the edge and the terminal wraps them (as `docker ps` does)."""
    from rich.measure import Measurement

    out = out or console
    minimum = Measurement.get(out, out.options.update(width=UNBOUNDED), table).minimum
    terminal = out.width
    out.width = max(terminal, minimum)  # print(width=) can only narrow
    try:
        out.print(table)
    finally:
        out.width = terminal


def print_error(error: ServestackError) -> None:
    err_console.print(styled(("error:", "bold red"), " ", error.message))
    if isinstance(error, EngineError) and error.log_tail:
        err_console.print("last lines of its log:", style="dim")
        for line in error.log_tail:
            err_console.print(styled("  ", ("│", "dim"), " ", line))
    if error.fix:
        err_console.print(styled(("fix:", "yellow"), " ", error.fix))


def _print_version(wanted: bool) -> None:
    if wanted:
        import servestack

        typer.echo(f"servestack {servestack.__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(
        False, "--version", is_eager=True, callback=_print_version, help="Print the version and exit."
    ),
) -> None:
    """Run every LLM you host from one stack file: plan, launch, supervise, serve."""


def run() -> None:
    """Run the command line (its commands registered): user mistakes print one clear message and exit
    non-zero, never a traceback."""
    try:
        app()
    except ServestackError as error:
        print_error(error)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None
