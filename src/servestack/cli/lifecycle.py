"""`up` and `down`: run a stack in the foreground, and stop one from another shell."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from pathlib import Path

import typer

from servestack.cli.app import StackOption, app, choose_stack, console, engine_environ, settings
from servestack.cli.progress import RichReporter
from servestack.controller import Controller, stop_instance
from servestack.errors import PlanError
from servestack.plan import Plan, make_plan
from servestack.stack import Stack, resolve_model


@app.command()
def up(
    file: Path | None = StackOption,
    host: str | None = typer.Option(None, "--host", help="Gateway interface (overrides gateway.host)."),
    port: int | None = typer.Option(None, "--port", help="Gateway port (overrides gateway.port)."),
) -> None:
    """Start every service of the stack and serve them behind the gateway, in the foreground.

    Ctrl-C (or SIGTERM) stops every engine it started.
    """
    stack, label = choose_stack(file)
    stack = _override_gateway(stack, host, port)
    plan = _plan_or_refuse(stack)
    console.print(f"[dim]stack: {label}[/]", highlight=False)
    controller = Controller(plan, settings(), RichReporter(console), stack_label=label, environ=engine_environ(file))
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(_serve_until_signal(controller))
    console.print("[dim]stopped.[/]")


@app.command()
def down(
    timeout: float = typer.Option(30.0, help="Seconds to wait for a clean stop before killing."),
) -> None:
    """Stop the servestack running from another shell (and any engine it left behind)."""
    report = stop_instance(settings(), timeout=timeout)
    if report.instance_pid is None and not report.leftovers:
        console.print("nothing is running")
        return
    if report.instance_pid is not None:
        console.print(f"stopped servestack (pid {report.instance_pid})")
    for replica in report.leftovers:
        console.print(f"stopped leftover engine {replica.service} (process group {replica.pgid})")


def _override_gateway(stack: Stack, host: str | None, port: int | None) -> Stack:
    if host is None and port is None:
        return stack
    data = stack.model_dump()
    data["gateway"].update({k: v for k, v in {"host": host, "port": port}.items() if v is not None})
    return Stack.model_validate(data)


def _plan_or_refuse(stack: Stack) -> Plan:
    models = {name: resolve_model(service.model) for name, service in stack.services.items()}
    plan = make_plan(stack, models=models)
    if plan.errors:
        lines = [f"{f.service or 'stack'}: {f.message}" + (f" ({f.fix})" if f.fix else "") for f in plan.errors]
        raise PlanError("the stack cannot run:\n  " + "\n  ".join(lines))
    return plan


async def _serve_until_signal(controller: Controller) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await controller.run(stop)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop
