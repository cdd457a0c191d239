"""The command line: parse, call, render. Each command lives in its own module; `main` loads them.

`servestack version` answers before any command module is imported: it is the one command whose
answer needs none of them.
"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import typer

COMMAND_MODULES = (
    "basics",
    "bench",
    "bundle",
    "images",
    "inspect",
    "keys",
    "lifecycle",
    "logs",
    "models",
    "plan",
    "pull",
    "sim",
    "smoke",
    "usage",
)


def main() -> None:
    """The `servestack` console entry point."""
    if sys.argv[1:] in (["version"], ["--version"]):
        import servestack
        from servestack.compiled import build_name

        print(f"servestack {servestack.__version__} ({build_name()})")
        return
    from servestack.cli.app import run

    load_commands()
    run()


def load_commands() -> typer.Typer:
    """The typer app with every command registered on it."""
    for name in COMMAND_MODULES:
        importlib.import_module(f"servestack.cli.{name}")
    from servestack.cli.app import app

    return app


__all__ = ["load_commands", "main"]
