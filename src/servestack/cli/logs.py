"""`logs SERVICE`: the engine logs of every replica of a service, compose style.

Each replica writes its own file (`<home>/logs/SERVICE.N.log`); with several, every line gets the
replica's name as a prefix (`chat#1 | …`). The lines an engine writes for servestack's own health
probes and metrics scrapes are left out (each engine adapter declares what they look like).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import typer

from servestack.cli.app import app, settings
from servestack.errors import StateError

FOLLOW_POLL_SECONDS = 0.25


@dataclass
class ReplicaLog:
    label: str  # `chat`, `chat#1`
    path: Path


@app.command()
def logs(
    service: str = typer.Argument(..., help="Service name (or one replica: `chat#1`)."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines, from every replica."),
    lines: int = typer.Option(50, "--lines", "-n", help="How many lines of each replica to show first."),
    replica: int | None = typer.Option(None, "--replica", "-r", help="Only this replica (0 is the first)."),
) -> None:
    """Show a service's engine logs: every replica, each line prefixed with its name (`chat#1 | …`)."""
    from servestack.supervisor.process import tail_lines
    from servestack.supervisor.state import parse_label

    name, named_replica = parse_label(service)
    replica = named_replica if named_replica is not None else replica
    found = replica_logs(settings().logs_dir, name, replica)
    hide = probe_lines(name)
    width = max(len(log.label) for log in found) if len(found) > 1 else 0
    for log in found:
        for line in tail_lines(log.path, lines, hide=hide):
            typer.echo(prefixed(log.label, width, line))
    if follow:
        _follow(found, width, hide)


def replica_logs(logs_dir: Path, service: str, replica: int | None) -> list[ReplicaLog]:
    """The log of each replica of `service` (or of one), in replica order; StateError when there is none."""
    from servestack.supervisor.state import replica_label

    found = sorted(
        (int(index), path)
        for path in logs_dir.glob(f"{service}.*.log")
        if (index := path.name.removeprefix(f"{service}.").removesuffix(".log")).isdigit()
    )
    if not found:
        known = sorted({p.name.split(".")[0] for p in logs_dir.glob("*.*.log")})
        hint = f"services with logs: {', '.join(known)}" if known else "no service has written a log yet"
        raise StateError(f"no log for service {service!r} in {logs_dir}", fix=hint)
    if replica is not None:
        found = [(i, p) for i, p in found if i == replica]
        if not found:
            raise StateError(f"{service} has no replica {replica} with a log", fix=f"`servestack logs {service}`")
    return [ReplicaLog(replica_label(service, i), path) for i, path in found]


def probe_lines(service: str) -> tuple[str, ...]:
    """What the service's engine logs for servestack's probes; for a service the state dir does not
    know (nothing running), what any engine logs for them."""
    from servestack.engines import ENGINES
    from servestack.supervisor.state import StateStore

    records = StateStore(settings().state_dir).read_replicas()
    engines = {r.engine for r in records if r.service == service} or set(ENGINES)
    return tuple(line for name in sorted(engines) if name in ENGINES for line in ENGINES[name].probe_log_lines)


def prefixed(label: str, width: int, line: str) -> str:
    return f"{label:<{width}} | {line}" if width else line


def _follow(found: list[ReplicaLog], width: int, hide: tuple[str, ...]) -> None:
    """Print lines as they are appended to any of the logs, until Ctrl-C."""
    from servestack.supervisor.process import is_hidden

    files = [(log, log.path.open("rb")) for log in found]
    pending = {log.label: b"" for log in found}
    try:
        for _, f in files:
            f.seek(0, 2)
        while True:
            quiet = True
            for log, f in files:
                chunk = f.read()
                if not chunk:
                    continue
                quiet = False
                *complete, pending[log.label] = (pending[log.label] + chunk).split(b"\n")
                for raw in complete:
                    line = raw.decode(errors="replace")
                    if not is_hidden(line, hide):
                        typer.echo(prefixed(log.label, width, line))
            if quiet:
                time.sleep(FOLLOW_POLL_SECONDS)
    except KeyboardInterrupt:
        pass
    finally:
        for _, f in files:
            f.close()
