"""`models` and `rm`: the models on this machine, checking their files, and removing one."""

from __future__ import annotations

from pathlib import Path

import typer

from servestack.cli.app import StackOption, app


@app.command()
def models(
    model: str | None = typer.Argument(None, metavar="[MODEL]", help="Only this model (with --verify: check only it)."),
    stack_file: Path | None = StackOption,
    verify: bool = typer.Option(False, "--verify", help="Hash every file again and compare it with its record."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Every model on this machine: name, format, quantisation, size, where, which services use it.

    It looks in the HF cache, in folders `pull --dir` filled, in the models dir (ModelScope folders and GGUF
    files) and at the stack's own model paths. --verify hashes each file and compares it with the SHA-256
    recorded when it was pulled (checked against the hub then) or loaded from a bundle; a mismatch is an
    error naming the file.
    """
    from servestack.cli.model_listing import show_models

    show_models(model, stack_file, verify=verify, as_json=as_json)


@app.command()
def rm(
    model: str = typer.Argument(..., metavar="MODEL", help="A name `servestack models` shows, a hub id or short name."),
    stack_file: Path | None = StackOption,
) -> None:
    """Remove a model's files from this machine; refused while a running service uses it."""
    from servestack.cli.model_listing import remove

    remove(model, stack_file)
