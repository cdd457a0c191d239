"""`bundle create|load`: a stack's weights (and venv wheels) in one file, prepared online, loaded offline."""

from __future__ import annotations

from pathlib import Path

import typer

from servestack.cli.app import app

bundle_app = typer.Typer(
    help="Pack a stack's weights into one file where there is a hub; load it where there is none.",
    no_args_is_help=True,
)
app.add_typer(bundle_app, name="bundle")


@bundle_app.command("create")
def create(
    stack_file: Path = typer.Argument(..., metavar="STACK", help="The stack file whose models to pack."),
    out: Path = typer.Option(..., "--output", "-o", help="The bundle file to write (a tar)."),
    wheels: bool = typer.Option(
        False, "--wheels", help="Also pack wheels of every venv runtime (`pip download`, so pip needs its index)."
    ),
) -> None:
    """Pack the weights the stack's services load, with a manifest and SHA-256 checksums.

    Models must be on this machine already (`servestack pull -f STACK`). The stack file goes in too.
    """
    from servestack.cli.bundling import create_bundle

    create_bundle(stack_file, out, with_wheels=wheels)


@bundle_app.command("load")
def load(
    bundle: Path = typer.Argument(..., metavar="FILE", help="A bundle made by `servestack bundle create`."),
    directory: Path = typer.Option(Path("."), "--dir", help="Where the stack file (and its ./ models) go."),
) -> None:
    """Load a bundle with no network: checks every file, puts hub models into the HF cache, builds venvs.

    Then `servestack up -f DIR/STACK` runs the stack offline.
    """
    from servestack.cli.bundling import load_bundle_file

    load_bundle_file(bundle, directory)
