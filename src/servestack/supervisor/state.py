"""State on disk, so that `status`, `logs` and `down` in another shell see what `up` runs.

One JSON file for the running instance and one per replica, under `<home>/state/`. Every write is
atomic (temp file + rename), so a reader never sees half a file. A replica's record carries its
recent history (started, ready, exited with code or signal and its last log lines, stopped), so
`status` can say what happened after the fact, and what its engine allocated at this start.

Calibration records (`plan/calibration.py`) go to `calibration/<service>.json`, the last
CALIBRATIONS_KEPT of each service: unlike the replicas' files they outlive the instance, for `plan`.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from enum import Enum
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from servestack.plan.calibration import CalibrationRecord

M = TypeVar("M", bound=BaseModel)
UNIX_SOCKET_PATH_MAX = 100
REPLICA_SEPARATOR = "#"
EVENTS_KEPT = 20  # per replica: enough for a crash loop's story, small enough to rewrite on every change
CALIBRATIONS_KEPT = 20  # per service: its last starts, whatever their settings


class ReplicaStatus(Enum):
    STARTING = "starting"
    READY = "ready"
    RESTARTING = "restarting"  # died; waiting out the backoff before the next start
    FAILED = "failed"  # did not start, or died and the restart policy gave up
    EXITED = "exited"  # ended on its own with code 0 and its policy does not restart that
    STOPPING = "stopping"
    STOPPED = "stopped"  # stopped on request
    DRAINING = "draining"  # takes no new requests; the ones in flight finish, then it is stopped or put to sleep
    UNLOADED = "unloaded"  # an on-demand engine stopped when idle or evicted: the next request loads it
    SLEEPING = "sleeping"  # an on-demand engine asleep: its process runs, its GPU memory is released


# Statuses in which no process of the replica runs and none is coming by itself (a start or a request is needed).
DOWN_STATUSES = frozenset({ReplicaStatus.FAILED, ReplicaStatus.EXITED, ReplicaStatus.STOPPED, ReplicaStatus.UNLOADED})
# Statuses in which an on-demand replica holds no GPU memory beyond (asleep) a CUDA context.
UNLOADED_STATUSES = DOWN_STATUSES | {ReplicaStatus.SLEEPING}


class EventKind(Enum):
    STARTED = "started"
    READY = "ready"
    START_FAILED = "start failed"  # the process exited, reported a failure, or timed out before ready
    EXITED = "exited"  # a ready process ended
    LOST = "lost"  # a ready engine gone with its cluster node
    STOPPED = "stopped"
    UNLOADED = "unloaded"  # stopped or put to sleep by the controller (idle, evicted, asked)
    WOKE = "woke"


class ReplicaEvent(BaseModel):
    """One thing that happened to a replica; `message` is the line `up` and `status` show."""

    time: float
    kind: EventKind
    message: str
    restart: int = 0  # which automatic restart this belongs to (0: a start by `up` or the user)
    exit_code: int | None = None
    signal: str | None = None  # e.g. "SIGKILL" when a signal ended the process
    log_tail: list[str] = []


class InstanceState(BaseModel):
    """The controller process that runs `up`."""

    pid: int
    gateway_url: str
    stack: str
    started_at: float


class ReplicaState(BaseModel):
    """One engine process as the supervisor last saw it."""

    service: str
    replica: int = 0
    engine: str
    models: list[str]
    status: ReplicaStatus
    pid: int | None = None  # on its node
    pgid: int | None = None  # only for an engine on this machine: what may be signalled here
    port: int | None = None
    gpus: list[int] = []  # CUDA_VISIBLE_DEVICES on its node
    node: str | None = None  # the cluster node it runs on (its id); None: this machine
    node_name: str | None = None
    started_at: float | None = None
    ready_at: float | None = None
    restarts: int = 0
    last_error: str | None = None
    log_path: str
    command: str = ""
    # A process group id means nothing after a reboot; leftovers are only reaped within the same boot.
    boot_id: str = ""
    events: list[ReplicaEvent] = []  # oldest first, at most EVENTS_KEPT
    calibration: CalibrationRecord | None = None  # what the engine allocated at this start, once ready
    on_demand: bool = False  # loaded by requests (`load: on-demand`): status shows loading, loaded, unloaded

    @property
    def load_state(self) -> str | None:
        """An on-demand replica's state as `status` tells it: unloaded, loading, loaded, draining (None: always)."""
        if not self.on_demand:
            return None
        return LOAD_STATES.get(self.status, self.status.value)

    @property
    def key(self) -> str:
        return f"{self.service}.{self.replica}"

    @property
    def label(self) -> str:
        return replica_label(self.service, self.replica)

    def with_event(self, event: ReplicaEvent) -> ReplicaState:
        return self.model_copy(update={"events": [*self.events, event][-EVENTS_KEPT:]})

    def why_not_ready(self) -> str | None:
        """Why the replica is down or coming back: its last error, or how it ended; None when nothing to say
        (starting, ready, or stopped on purpose)."""
        if self.status is ReplicaStatus.EXITED and self.events:
            return self.events[-1].message
        if self.status in (ReplicaStatus.FAILED, ReplicaStatus.RESTARTING):
            return self.last_error
        return None

    def uptime(self, now: float | None = None) -> float | None:
        if self.status is not ReplicaStatus.READY or self.started_at is None:
            return None
        return (now or time.time()) - self.started_at


LOAD_STATES = {
    ReplicaStatus.STARTING: "loading",
    ReplicaStatus.READY: "loaded",
    ReplicaStatus.DRAINING: "draining",
    ReplicaStatus.STOPPING: "draining",
    ReplicaStatus.UNLOADED: "unloaded",
    ReplicaStatus.SLEEPING: "unloaded",
}


class Calibrations(BaseModel):
    """One service's calibration records, oldest first."""

    records: list[CalibrationRecord] = []


def replica_label(service: str, index: int) -> str:
    """How the CLI names a replica: `chat` for the first, `chat#1` for the next."""
    return service if index == 0 else f"{service}{REPLICA_SEPARATOR}{index}"


def parse_label(name: str) -> tuple[str, int | None]:
    """`chat#1` → ("chat", 1); a name without a replica number → (name, None)."""
    service, separator, index = name.partition(REPLICA_SEPARATOR)
    return (service, int(index)) if separator and index.isdigit() else (name, None)


class StateStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.replicas_dir = root / "replicas"

    @property
    def control_socket(self) -> Path:
        """Where the running instance listens for `start`, `stop`, `restart` from other shells.

        Inside the state dir when the path is short enough for a Unix socket (about 107 bytes),
        else in the runtime dir under a name derived from the state dir.
        """
        path = self.root / "control.sock"
        if len(str(path)) < UNIX_SOCKET_PATH_MAX:
            return path
        digest = hashlib.sha256(str(self.root).encode()).hexdigest()[:16]
        runtime = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
        return Path(runtime) / f"servestack-{os.getuid()}-{digest}.sock"

    @property
    def instance_path(self) -> Path:
        return self.root / "instance.json"

    def read_instance(self) -> InstanceState | None:
        return _read(self.instance_path, InstanceState)

    def write_instance(self, instance: InstanceState) -> None:
        _write_atomic(self.instance_path, instance.model_dump_json(indent=2))

    def clear_instance(self) -> None:
        self.instance_path.unlink(missing_ok=True)

    def write_replica(self, replica: ReplicaState) -> None:
        _write_atomic(self.replicas_dir / f"{replica.key}.json", replica.model_dump_json(indent=2))

    def read_replicas(self) -> list[ReplicaState]:
        if not self.replicas_dir.is_dir():
            return []
        found = (_read(p, ReplicaState) for p in sorted(self.replicas_dir.glob("*.json")))
        return [r for r in found if r is not None]

    def clear_replicas(self) -> None:
        for path in self.replicas_dir.glob("*.json"):
            path.unlink(missing_ok=True)

    def append_calibration(self, record: CalibrationRecord) -> None:
        kept = [*self.read_calibration(record.service), record][-CALIBRATIONS_KEPT:]
        history = Calibrations(records=kept)
        _write_atomic(self.root / "calibration" / f"{record.service}.json", history.model_dump_json(indent=2))

    def read_calibration(self, service: str) -> list[CalibrationRecord]:
        """The service's calibration records, oldest first (none: empty)."""
        history = _read(self.root / "calibration" / f"{service}.json", Calibrations)
        return history.records if history else []


def _read(path: Path, model: type[M]) -> M | None:
    try:
        return model.model_validate_json(path.read_bytes())
    except (FileNotFoundError, ValidationError, ValueError):
        return None


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def current_boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def pid_alive(pid: int) -> bool:
    """True while `pid` runs; a zombie (exited, not yet reaped by its parent) counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] != "Z"
