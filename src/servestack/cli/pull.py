"""`pull`: download the weights a stack's services (or one model) need, before `up` needs them."""

from __future__ import annotations

from pathlib import Path

import typer

from servestack.cli.app import StackOption, app

TargetArgument = typer.Argument(
    None,
    metavar="[SERVICE|MODEL]",
    help="A service of the stack, or a model: ORG/NAME, ORG/NAME:QUANT (one GGUF quant) or modelscope:ORG/NAME. "
    "Omitted: the model of every service.",
)


@app.command()
def pull(
    target: str | None = TargetArgument,
    stack_file: Path | None = StackOption,
    revision: str | None = typer.Option(None, "--revision", help="Branch, tag or commit (default: main)."),
    include: list[str] = typer.Option(
        [], "--include", help="Fetch only files matching this glob (repeatable), instead of the automatic choice."
    ),
    directory: Path | None = typer.Option(
        None, "--dir", help="Download into this folder instead of the HF cache (or the models dir for ModelScope)."
    ),
) -> None:
    """Download model weights from Hugging Face or ModelScope: resumable, disk space checked first.

    Files go to the HF cache that engines read (HF_HUB_CACHE or HF_HOME), or to --dir.

    HF_TOKEN and HF_ENDPOINT come from the environment or the .env beside the stack file.
    """
    from servestack.cli.pulling import pull_models  # huggingface_hub and the rest load only for a pull

    pull_models(target, stack_file, revision, include, directory)
