"""`status` and `logs`: what the running instance is doing, read from the state dir."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import typer
from rich.table import Table
from rich.text import Text

from servestack.cli.app import app, console, settings, styled
from servestack.errors import StateError
from servestack.gpus import gpu_memory_by_group
from servestack.supervisor import ReplicaState, ReplicaStatus, StateStore, pid_alive, tail_lines

STATUS_STYLE = {
    ReplicaStatus.READY: "green",
    ReplicaStatus.STARTING: "yellow",
    ReplicaStatus.RESTARTING: "yellow",
    ReplicaStatus.FAILED: "red",
    ReplicaStatus.STOPPING: "yellow",
    ReplicaStatus.STOPPED: "dim",
}


@app.command()
def status(as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON.")) -> None:
    """Show the running instance and the state of every service."""
    store = StateStore(settings().state_dir)
    instance = store.read_instance()
    running = instance is not None and pid_alive(instance.pid)
    replicas = store.read_replicas() if running else []
    if as_json:
        payload = {
            "running": running,
            "instance": instance.model_dump(mode="json") if running and instance else None,
            "services": [r.model_dump(mode="json", exclude={"boot_id"}) for r in replicas],
        }
        console.print_json(orjson.dumps(payload).decode())
        return
    if not running or instance is None:
        console.print("nothing is running (`servestack up` starts the stack)")
        return
    console.print(f"servestack pid {instance.pid}, gateway {instance.gateway_url}/v1, stack: {instance.stack}")
    console.print(status_table(replicas, gpu_memory_by_group()))


def status_table(replicas: list[ReplicaState], gpu_memory: dict[int, int] | None) -> Table:
    """One row per engine process; a GPU MEM column when NVML can tell (None: no driver)."""
    table = Table(box=None, header_style="bold")
    columns = ["SERVICE", "ENGINE", "STATE", "PID", "PORT", "GPUS", "UPTIME", "RESTARTS", "MODELS"]
    if gpu_memory is not None:
        columns.insert(6, "GPU MEM")
    for column in columns:
        table.add_column(column)
    now = time.time()
    for r in replicas:
        state = styled((r.status.value, STATUS_STYLE[r.status]))
        if r.last_error and r.status in (ReplicaStatus.FAILED, ReplicaStatus.RESTARTING):
            state.append(f"\n{r.last_error[:120]}", style="dim")
        uptime = r.uptime(now)
        cells: list[str | Text] = [
            r.service if r.replica == 0 else f"{r.service}#{r.replica}",
            r.engine,
            state,
            str(r.pid or "-"),
            str(r.port or "-"),
            ",".join(map(str, r.gpus)) or "cpu",
            _duration(uptime) if uptime is not None else "-",
            str(r.restarts),
            ", ".join(r.models),
        ]
        if gpu_memory is not None:
            used = gpu_memory.get(r.pgid or -1) if r.pid else None
            cells.insert(6, f"{used / 2**30:.1f} GiB" if used else "-")
        table.add_row(*cells)
    return table


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


@app.command()
def logs(
    service: str = typer.Argument(..., help="Service name."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines."),
    lines: int = typer.Option(50, "--lines", "-n", help="How many lines to show first."),
) -> None:
    """Show a service's engine log (the last lines; -f to follow)."""
    log_path = _log_path(service)
    for line in tail_lines(log_path, lines):
        typer.echo(line)
    if follow:
        _follow(log_path)


def _log_path(service: str) -> Path:
    home = settings()
    candidates = sorted(home.logs_dir.glob(f"{service}.*.log"))
    if not candidates:
        known = sorted({p.name.split(".")[0] for p in home.logs_dir.glob("*.log")})
        hint = f"services with logs: {', '.join(known)}" if known else "no service has written a log yet"
        raise StateError(f"no log for service {service!r} in {home.logs_dir}", fix=hint)
    return candidates[0]


def _follow(path: Path) -> None:
    with path.open("rb") as f:
        f.seek(0, 2)
        try:
            while True:
                chunk = f.read()
                if chunk:
                    typer.echo(chunk.decode(errors="replace"), nl=False)
                else:
                    time.sleep(0.25)
        except KeyboardInterrupt:
            pass
