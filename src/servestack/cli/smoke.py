"""`smoke [SERVICE]`: prove a service really answers (start, one request, stop)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from servestack.cli.app import StackOption, app, choose_stack, console, print_error, run_async, settings, styled
from servestack.cli.lifecycle import plan_or_refuse
from servestack.errors import EngineError, StateError

if TYPE_CHECKING:
    from servestack.controller.smoke import SmokeResult
    from servestack.plan import Plan


@app.command()
def smoke(
    service: str | None = typer.Argument(None, help="Service to test (default: every service of the stack)."),
    file: Path | None = StackOption,
) -> None:
    """Start a service in a throwaway instance, send it one real chat request, stop it.

    Exits 0 only if every tested service answered with a valid, non-empty completion.
    """
    stack, label = choose_stack(file)
    if service is not None and service not in stack.services:
        raise StateError(f"no service {service!r} in {label}", fix=f"services: {', '.join(stack.services)}")
    plan = plan_or_refuse(stack)
    names = [service] if service else list(stack.services)
    results = [_smoke_one(plan, name) for name in names]
    if not all(r is not None and r.ok for r in results):
        raise typer.Exit(1)


def _smoke_one(plan: Plan, name: str) -> SmokeResult | None:
    from servestack.cli.progress import RichReporter
    from servestack.controller.smoke import smoke_service  # its HTTP client stays out of other commands

    console.print(f"smoke {name}", style="bold")
    try:
        result = run_async(smoke_service(plan, settings(), name, RichReporter(console, announce=False)))
    except EngineError as error:
        print_error(error)
        return None
    print_smoke_result(result)
    return result


def print_smoke_result(result: SmokeResult) -> None:
    if result.ok:
        console.print(
            styled(
                ("✓", "green"),
                f" {result.service} answered in {result.seconds_to_answer:.1f}s "
                f"(ready after {result.seconds_to_ready:.1f}s): {result.answer!r}",
            )
        )
    else:
        console.print(styled(("✗", "red"), f" {result.service}: {result.detail}"))
