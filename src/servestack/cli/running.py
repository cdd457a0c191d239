"""What `status` and `ps` show of the running instance, read from the state dir.

Both read JSON files (and `ps` asks the control socket how on-demand services are used); they import
nothing of the planner, the engines or the gateway. An on-demand service's state reads as its load
state: unloaded, loading, loaded, draining.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table
from rich.text import Text

from servestack.cli.app import console, settings, styled
from servestack.gpus import gpu_memory_by_group
from servestack.plan.calibration import CalibrationRecord
from servestack.supervisor.state import (
    EventKind,
    InstanceState,
    ReplicaEvent,
    ReplicaState,
    ReplicaStatus,
    StateStore,
    pid_alive,
)

STATUS_STYLE = {
    ReplicaStatus.READY: "green",
    ReplicaStatus.STARTING: "yellow",
    ReplicaStatus.RESTARTING: "yellow",
    ReplicaStatus.FAILED: "red",
    ReplicaStatus.EXITED: "yellow",
    ReplicaStatus.STOPPING: "yellow",
    ReplicaStatus.STOPPED: "dim",
    ReplicaStatus.DRAINING: "yellow",
    ReplicaStatus.UNLOADED: "dim",
    ReplicaStatus.SLEEPING: "dim",
}
LOAD_STYLE = {"unloaded": "dim", "loading": "yellow", "loaded": "green", "draining": "yellow"}
SERVICE_STYLE = {
    "degraded": "yellow",
    **{status.value: style for status, style in STATUS_STYLE.items()},
    **LOAD_STYLE,
}
RECENT_EVENTS = 8  # lines of history under the table
NOTHING_RUNNING = "nothing is running (`servestack up` starts the stack)"


@dataclass
class Running:
    """The running instance and its replicas as the state dir has them."""

    instance: InstanceState
    replicas: list[ReplicaState]


def read_running() -> Running | None:
    """What runs, or None when no live instance is recorded."""
    store = StateStore(settings().state_dir)
    instance = store.read_instance()
    if instance is None or not pid_alive(instance.pid):
        return None
    return Running(instance, store.read_replicas())


def show_replicas(out: Console, replicas: list[ReplicaState], gpu_memory: dict[int, int] | None) -> None:
    """The table, then why any replica is not ready, then the recent events."""
    out.print(status_table(replicas, gpu_memory))
    reasons = [(r, reason) for r in replicas if (reason := r.why_not_ready())]
    if reasons:
        out.print()
        out.print("why not ready", style="bold")
        out.print(columns([(r.label, reason) for r, reason in reasons]))
    events = recent_events(replicas)
    if events:
        out.print()
        out.print("recent events", style="bold")
        out.print(columns([(clock(e.time), r.label, e.message) for r, e in events]))


def status_table(replicas: list[ReplicaState], gpu_memory: dict[int, int] | None) -> Table:
    """One row per engine process; a GPU MEM column when NVML can tell (None: no driver), a KV TOKENS column
    when an engine's log stated its KV cache (what it allocated, and what the plan predicted), a NODE column
    when replicas run on a cluster's nodes (their PIDs and GPUs are the node's)."""
    table = Table(box=None, header_style="bold")
    columns = ["SERVICE", "ENGINE", "STATE", "PID", "PORT", "GPUS", "UPTIME", "RESTARTS", "MODELS"]
    on_nodes = any(r.node for r in replicas)
    measured = any(r.calibration is not None for r in replicas)
    if measured:
        columns.insert(6, "KV TOKENS")
    if gpu_memory is not None:
        columns.insert(6, "GPU MEM")
    if on_nodes:
        columns.insert(3, "NODE")
    for column in columns:
        table.add_column(column)
    now = time.time()
    for r in replicas:
        uptime = r.uptime(now)
        cells: list[str | Text] = [
            r.label,
            r.engine,
            styled(state_cell(r)),
            str(r.pid or "-"),
            str(r.port or "-"),
            ",".join(map(str, r.gpus)) or "cpu",
            duration(uptime) if uptime is not None else "-",
            str(r.restarts),
            ", ".join(r.models),
        ]
        if measured:
            cells.insert(6, kv_tokens_cell(r.calibration))
        if gpu_memory is not None:
            used = gpu_memory.get(r.pgid or -1) if r.pid else None
            cells.insert(6, f"{used / 2**30:.1f} GiB" if used else "-")
        if on_nodes:
            cells.insert(3, r.node_name or "-")
        table.add_row(*cells)
    return table


def state_cell(replica: ReplicaState) -> tuple[str, str]:
    """The replica's state and its style: an on-demand one's load state (`unloaded (asleep)` when sleeping)."""
    load = replica.load_state
    if load is None or load not in LOAD_STYLE:
        return replica.status.value, STATUS_STYLE[replica.status]
    asleep = " (asleep)" if replica.status is ReplicaStatus.SLEEPING else ""
    return load + asleep, LOAD_STYLE[load]


def kv_tokens_cell(record: CalibrationRecord | None) -> str | Text:
    """`2,048 (plan 2,048)`: the KV tokens the engine allocated at this start, and the plan's; yellow past 10%."""
    if record is None or record.allocated.kv_tokens is None:
        return "-"
    predicted = record.predicted.kv_tokens
    plan = f"plan {predicted:,}" if predicted is not None else "no plan"
    differs = any(c.differs for c in record.compare() if c.figure == "kv_tokens")
    return styled((f"{record.allocated.kv_tokens:,} ({plan})", "yellow" if differs else ""))


def recent_events(replicas: list[ReplicaState]) -> list[tuple[ReplicaState, ReplicaEvent]]:
    """The latest events worth a line (exits, failed starts, restarts, stops), oldest first."""
    notable = [(r, e) for r in replicas for e in r.events if not is_routine(e)]
    return sorted(notable, key=lambda pair: pair[1].time)[-RECENT_EVENTS:]


def is_routine(event: ReplicaEvent) -> bool:
    """A start and its readiness, when `up` or a user asked for them: nothing to report."""
    return event.kind is EventKind.STARTED or (event.kind is EventKind.READY and event.restart == 0)


def columns(rows: list[tuple[str, ...]]) -> Table:
    """Rows of plain text in aligned columns, no header; only the last column wraps."""
    table = Table(box=None, show_header=False)
    for last in [False] * (len(rows[0]) - 1) + [True]:
        table.add_column(no_wrap=not last)
    for row in rows:
        table.add_row(*row)
    return table


@dataclass
class ServiceSummary:
    """One line of `ps`."""

    service: str
    state: str
    engine: str
    replicas: int
    ready: int
    gpus: list[int]
    nodes: list[str]  # the cluster nodes its replicas run on; empty: this machine
    ports: list[int]
    uptime_seconds: float | None
    models: list[str]


def summarize(replicas: list[ReplicaState]) -> list[ServiceSummary]:
    """One summary per service, in the order of its first replica."""
    by_service: dict[str, list[ReplicaState]] = {}
    for r in replicas:
        by_service.setdefault(r.service, []).append(r)
    now = time.time()
    summaries = []
    for name, group in by_service.items():
        ready = [r for r in group if r.status is ReplicaStatus.READY]
        uptimes = [u for u in (r.uptime(now) for r in ready) if u is not None]
        summaries.append(
            ServiceSummary(
                service=name,
                state=service_state(group),
                engine=group[0].engine,
                replicas=len(group),
                ready=len(ready),
                gpus=sorted({g for r in group for g in r.gpus}),
                nodes=list(dict.fromkeys(r.node_name for r in group if r.node_name)),
                ports=[r.port for r in group if r.port],
                uptime_seconds=max(uptimes) if uptimes else None,
                models=group[0].models,
            )
        )
    return summaries


def service_state(replicas: list[ReplicaState]) -> str:
    """`ready` when every replica is; `degraded` when some are; else the first replica's status (an on-demand
    service: its load state)."""
    if replicas[0].load_state is not None:
        return state_cell(replicas[0])[0]
    ready = sum(r.status is ReplicaStatus.READY for r in replicas)
    if ready == len(replicas):
        return "ready"
    return "degraded" if ready else replicas[0].status.value


def duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def clock(timestamp: float) -> str:
    """Local time of day, with the date once it is not today."""
    shown, now = time.localtime(timestamp), time.localtime()
    today = (shown.tm_year, shown.tm_yday) == (now.tm_year, now.tm_yday)
    return time.strftime("%H:%M:%S" if today else "%Y-%m-%d %H:%M:%S", shown)


def show_status(as_json: bool) -> None:
    """`servestack status`."""
    running = read_running()
    if as_json:
        payload = {
            "running": running is not None,
            "instance": running.instance.model_dump(mode="json") if running else None,
            "services": [
                {**r.model_dump(mode="json", exclude={"boot_id"}), "load": r.load_state} for r in running.replicas
            ]
            if running
            else [],
        }
        console.print_json(orjson.dumps(payload).decode())
        return
    if running is None:
        console.print(NOTHING_RUNNING)
        return
    instance = running.instance
    console.print(f"servestack pid {instance.pid}, gateway {instance.gateway_url}/v1, stack: {instance.stack}")
    show_replicas(console, running.replicas, gpu_memory_by_group())


def show_ps(as_json: bool) -> None:
    """`servestack ps`."""
    from servestack.controller.client import on_demand_snapshot

    running = read_running()
    services = summarize(running.replicas) if running else []
    use = {row["service"]: row for row in on_demand_snapshot(settings()) or []} if running else {}
    if as_json:
        rows = [{**asdict(s), "on_demand": use.get(s.service)} for s in services]
        console.print_json(orjson.dumps({"running": running is not None, "services": rows}).decode())
        return
    if running is None:
        console.print(NOTHING_RUNNING)
        return
    table = Table(box=None, header_style="bold")
    columns = ["SERVICE", "STATE", "ENGINE", "READY", "GPUS", "PORTS", "UPTIME", "MODELS"]
    if use:
        columns[7:7] = ["CLAIMED", "IDLE", "UNLOADS IN", "REQUESTS"]
    on_nodes = any(s.nodes for s in services)
    if on_nodes:
        columns.insert(4, "NODES")
    for column in columns:
        table.add_column(column)
    for s in services:
        cells: list[str | Text] = [
            s.service,
            styled((s.state, SERVICE_STYLE.get(s.state.split()[0], ""))),
            s.engine,
            f"{s.ready}/{s.replicas}",
            ",".join(map(str, s.gpus)) or "cpu",
            ",".join(map(str, s.ports)),
            duration(s.uptime_seconds) if s.uptime_seconds is not None else "-",
            ", ".join(s.models),
        ]
        if use:
            cells[7:7] = on_demand_cells(use.get(s.service))
        if on_nodes:
            cells.insert(4, ",".join(s.nodes) or "-")
        table.add_row(*cells)
    console.print(table)


def on_demand_cells(row: dict[str, Any] | None) -> list[str]:
    """CLAIMED (GPU memory the plan gives it), IDLE, UNLOADS IN, REQUESTS (in flight / waiting)."""
    if row is None:
        return ["always", "-", "-", "-"]
    loaded = row["state"] != "unloaded"
    claimed = f"{row['claimed_bytes'] / 2**30:.1f} GiB" if loaded and row["claimed_bytes"] else "-"
    idle = duration(row["idle_seconds"]) if row["idle_seconds"] is not None else "-"
    unloads = row["unloads_in_seconds"]
    if row["keep_alive_seconds"] is None and loaded:
        unloads_in = "never"
    else:
        unloads_in = duration(unloads) if unloads is not None else "-"
    return [claimed, idle, unloads_in, f"{row['in_flight']}/{row['waiting']}"]
