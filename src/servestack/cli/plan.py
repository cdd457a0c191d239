"""`plan`: does the stack fit the GPUs, at which TP, with how much KV cache — and why not."""

from __future__ import annotations

from pathlib import Path

import typer

from servestack.cli.app import StackOption, app


@app.command("plan")
def plan_command(
    file: Path | None = StackOption,
    gpus: str | None = typer.Option(
        None, "--gpus", help="Plan for these GPUs instead of this machine's: 4xH200, 2xH100-80GB,1xA10G, 8x141GiB, cpu."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (schema in docs/plan.md)."),
    explore: str | None = typer.Option(
        None, "--explore-tp", metavar="SERVICE", help="Show every TP size for SERVICE: memory per GPU and verdict."
    ),
    show_commands: bool = typer.Option(
        False, "--show-commands", help="Also print the exact process each service starts (argv and environment)."
    ),
    cuda: str | None = typer.Option(
        None, "--cuda", metavar="VERSION", help="The driver's CUDA version to choose environments by (e.g. 12.8)."
    ),
) -> None:
    """Check that the stack fits the GPUs: placement, TP, memory per GPU, KV cache, and findings with fixes.

    Exits 1 when the plan has errors (the ones `up` refuses to start with). With --gpus it plans for
    another machine: this one's ports and installed programs are not checked.
    """
    from servestack.cli.planning import run_plan  # the planner, model facts and NVML load only to plan

    run_plan(file, gpus, as_json, explore, show_commands, cuda)
