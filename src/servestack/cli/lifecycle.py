"""Lifecycle: `up` (foreground or detached), `down`, and `start|stop|restart SERVICE`.

What only `up` needs (the planner, the controller) is imported inside it: `stop` and `down` read
the state dir and talk to the control socket, and should cost no more than that.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from servestack.cli.app import StackOption, app, choose_stack, console, engine_environ, run_async, settings, styled
from servestack.errors import StateError

if TYPE_CHECKING:
    from servestack.controller import Controller
    from servestack.plan import Plan
    from servestack.stack import Stack
    from servestack.supervisor import ReplicaState


@app.command()
def up(
    services: list[str] = typer.Argument(None, help="Services to start (default: all of the stack)."),
    file: Path | None = StackOption,
    host: str | None = typer.Option(None, "--host", help="Gateway interface (overrides gateway.host)."),
    port: int | None = typer.Option(None, "--port", help="Gateway port (overrides gateway.port)."),
    detach: bool = typer.Option(False, "--detach", "-d", help="Run in the background; return once ready."),
    force: bool = typer.Option(False, "--force", help="Start even when the plan has errors."),
    gpus: str | None = typer.Option(
        None, "--gpus", help="Plan for these GPUs (e.g. 4xH200) instead of this machine's: simulated services only."
    ),
) -> None:
    """Start the stack's services and serve them behind the gateway, in the foreground.

    Ctrl-C (or SIGTERM) stops every engine it started. With -d it runs in the background:
    `servestack status`, `logs`, `start|stop|restart SERVICE` and `down` steer it.
    """
    stack, label = choose_stack(file)
    stack = _override_gateway(stack, host, port)
    unknown = [name for name in services or [] if name not in stack.services]
    if unknown:
        raise StateError(f"no service {unknown[0]!r} in {label}", fix=f"services: {', '.join(stack.services)}")
    plan = plan_or_refuse(stack, force=force, gpus=gpus)
    if detach:
        _up_detached(services or [], file, host, port, force, gpus)
        return
    from servestack.cli.progress import RichReporter
    from servestack.controller import Controller

    console.print(f"stack: {label}", style="dim")
    controller = Controller(plan, settings(), RichReporter(console), stack_label=label, environ=engine_environ(file))
    run_async(_serve_until_signal(controller, services or None))
    console.print("stopped.", style="dim")


@app.command()
def start(service: str = typer.Argument(..., help="Service name."), file: Path | None = StackOption) -> None:
    """Start a service in the running instance (or start the instance with just that service)."""
    from servestack.controller.client import instance_running, service_action

    config = settings()
    if not instance_running(config):
        console.print(f"nothing is running: starting servestack in the background with {service}")
        up([service], file, None, None, detach=True, force=False, gpus=None)
        return
    with console.status(styled(f"starting {service}…")):
        service_action(config, service, "start")
    console.print(styled(("✓", "green"), f" {service} is ready"))


@app.command()
def stop(service: str = typer.Argument(..., help="Service name.")) -> None:
    """Stop a service of the running instance (in-flight requests finish first)."""
    from servestack.controller.client import service_action

    with console.status(styled(f"draining and stopping {service}…")):
        service_action(settings(), service, "stop")
    console.print(f"stopped {service}")


@app.command()
def restart(service: str = typer.Argument(..., help="Service name.")) -> None:
    """Restart a service of the running instance (drain, stop, start, wait until ready)."""
    from servestack.controller.client import service_action

    with console.status(styled(f"restarting {service}…")):
        service_action(settings(), service, "restart")
    console.print(styled(("✓", "green"), f" {service} restarted and ready"))


@app.command()
def load(service: str = typer.Argument(..., help="An on-demand service.")) -> None:
    """Load an on-demand service now (evicting idle ones whose GPUs it needs, by the plan)."""
    from servestack.controller.client import service_action

    with console.status(styled(f"loading {service}…")):
        service_action(settings(), service, "load")
    console.print(styled(("✓", "green"), f" {service} is loaded"))


@app.command()
def unload(service: str = typer.Argument(..., help="An on-demand service.")) -> None:
    """Unload an on-demand service (its requests in flight finish first); the next request loads it again."""
    from servestack.controller.client import service_action

    with console.status(styled(f"draining and unloading {service}…")):
        service_action(settings(), service, "unload")
    console.print(f"unloaded {service}")


@app.command()
def down(
    timeout: float = typer.Option(30.0, help="Seconds to wait for a clean stop before killing."),
) -> None:
    """Stop the servestack running from another shell (and any engine it left behind)."""
    from servestack.controller.instance import stop_instance

    report = stop_instance(settings(), timeout=timeout)
    leftovers = report.leftovers
    if report.instance_pid is None and not leftovers.recorded and not leftovers.unrecorded:
        console.print("nothing is running")
        return
    if report.instance_pid is not None:
        console.print(f"stopped servestack (pid {report.instance_pid})")
    for replica in leftovers.recorded:
        console.print(f"stopped leftover engine {replica.label} (process group {replica.pgid})")
    for pgid in leftovers.unrecorded:
        console.print(f"stopped a leftover engine the state dir had not recorded yet (process group {pgid})")


def _override_gateway(stack: Stack, host: str | None, port: int | None) -> Stack:
    if host is None and port is None:
        return stack
    changes = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    gateway = type(stack.gateway).model_validate({**stack.gateway.model_dump(), **changes})
    return stack.model_copy(update={"gateway": gateway})  # keeps the stack file's source map


def plan_or_refuse(stack: Stack, *, force: bool = False, gpus: str | None = None) -> Plan:
    """The plan for this machine (simulators: for `gpus`); a plan with errors is refused unless `force`."""
    from servestack.cli.planning import plan_for_up
    from servestack.engines import Parallelism, get_engine
    from servestack.gpus import parse_inventory

    if gpus is None:
        return plan_for_up(stack, force=force)
    real = [
        n for n, service in stack.services.items() if get_engine(service.engine).parallelism is not Parallelism.NONE
    ]
    if real:
        raise StateError(
            f"--gpus plans for GPUs this machine may not have, and {real[0]} runs an engine that needs them "
            f"({stack.services[real[0]].engine})",
            fix="use --gpus only with simulated services (engine: sim); `servestack plan --gpus` plans any stack",
        )
    return plan_for_up(stack, force=force, inventory=parse_inventory(gpus))


async def _serve_until_signal(controller: Controller, services: list[str] | None) -> None:
    import asyncio

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await controller.run(stop, services)


def _up_detached(
    services: list[str], file: Path | None, host: str | None, port: int | None, force: bool, gpus: str | None
) -> None:
    from servestack.controller.client import instance_running
    from servestack.controller.instance import launch_detached, wait_detached

    config = settings()
    if instance_running(config):
        raise StateError("servestack is already running", fix="`servestack start SERVICE` adds a service to it")
    argv = [sys.executable, "-m", "servestack", "up", *services]
    if file is not None:
        argv += ["-f", str(file.resolve())]
    if host is not None:
        argv += ["--host", host]
    if port is not None:
        argv += ["--port", str(port)]
    if force:
        argv.append("--force")
    if gpus is not None:
        argv += ["--gpus", gpus]
    log_path = config.logs_dir / "servestack.log"
    proc = launch_detached(argv, log_path)
    with console.status("starting in the background…") as status:

        def show(replicas: list[ReplicaState]) -> None:
            status.update(styled("starting: " + ", ".join(f"{r.service} {r.status.value}" for r in replicas)))

        instance = wait_detached(config, proc, log_path=log_path, timeout=config.ready_timeout, on_tick=show)
    where = f" in the background (pid {instance.pid}): {instance.gateway_url}/v1"
    console.print(styled(("servestack is up", "bold green"), where))
    console.print(f"log: {log_path}; `servestack down` stops it", style="dim")
