"""This machine as the stack needs it: the paths it names exist, the ports it listens on are free, the
programs its services start are installed.

The planner does no I/O: the CLI looks (`cli/survey.py`) and passes what it found as `HostFacts`;
these rules turn that into findings that point at the stack file. Planning for another machine
(`plan --gpus`) passes no facts for what only this machine can tell (its ports and programs).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from servestack.plan.calibration import CalibrationRecord
from servestack.plan.model import Finding, Severity, setting_key
from servestack.plan.ports import Listener, listeners
from servestack.stack import LocalPath, Stack, local_paths


@dataclass(frozen=True)
class Unresolved:
    """A model reference (`package:`, `modelscope:`, a GGUF model to pull, a short name) that names nothing here."""

    problem: str
    fix: str


@dataclass(frozen=True)
class HostFacts:
    """What the CLI found on this machine: the default knows nothing is wrong (nothing was looked at)."""

    missing_paths: frozenset[str] = frozenset()  # local paths of the stack (`local_paths`) that do not exist
    unresolved: Mapping[str, Unresolved] = field(default_factory=dict)  # model reference → why not
    # (host, port) of a listener (`listeners`) that cannot be bound → the system's reason (errno name, text)
    unbindable: Mapping[tuple[str, int], tuple[str, str]] = field(default_factory=dict)
    unlaunchable: Mapping[str, Unresolved] = field(default_factory=dict)  # service → why its process cannot start
    # service → the installed engine's version, when known (memory rules follow it; else the newest behaviour)
    engine_versions: Mapping[str, str] = field(default_factory=dict)
    # service → what its engine allocated at its starts here (`plan/calibration.py`), oldest first
    calibration: Mapping[str, Sequence[CalibrationRecord]] = field(default_factory=dict)
    memory_bytes: int | None = None  # host memory (sleeping engines keep their weights there); None: unknown

    def is_missing(self, path: str) -> bool:
        return path in self.missing_paths or path in self.unresolved


def host_findings(stack: Stack, host: HostFacts) -> list[Finding]:
    locals_ = local_paths(stack)
    paths = [_path_finding(stack, local, host) for local in locals_ if host.is_missing(local.path)]
    written = {local.path for local in locals_}
    paths += [
        Finding(
            Severity.ERROR,
            why.problem,
            service=name,
            fix=why.fix,
            code="path-missing",
            key=("services", name, "model"),
        )
        for name, service in stack.services.items()
        if service.model not in written and (why := host.unresolved.get(service.model)) is not None
    ]
    ports = [
        _port_finding(item, host.unbindable[item.address])
        for item in listeners(stack)
        if item.address in host.unbindable
    ]
    programs = [_unlaunchable(name, stack, why) for name, why in host.unlaunchable.items() if name in stack.services]
    return [*paths, *ports, *programs]


def _path_finding(stack: Stack, local: LocalPath, host: HostFacts) -> Finding:
    service = str(local.key[1])
    unresolved = host.unresolved.get(local.path)
    if unresolved is not None:
        return _missing(service, local, unresolved.problem, unresolved.fix)
    written = local.as_written(stack.written(local.key) or local.path)
    resolved = f" (resolved: {local.path})" if written != local.path else ""
    return _missing(service, local, f"no such {local.what} {written!r}{resolved}", local.fix)


def _unlaunchable(name: str, stack: Stack, why: Unresolved) -> Finding:
    return Finding(
        Severity.ERROR,
        f"cannot start {name}: {why.problem}",
        service=name,
        fix=why.fix,
        code="runtime-unavailable",
        key=setting_key(name, stack.services[name], "runtime"),
    )


def _missing(service: str, local: LocalPath, message: str, fix: str) -> Finding:
    return Finding(Severity.ERROR, message, service=service, fix=fix, code="path-missing", key=local.key)


# Why an address cannot be listened on, by errno name: (reason, fix).
_UNAVAILABLE = {
    "EADDRNOTAVAIL": (
        "it is not an address of this machine",
        "use one of its addresses (127.0.0.1, or 0.0.0.0 for all)",
    ),
    "EACCES": ("ports below 1024 need root", "choose a port above 1023"),
}


def _port_finding(listener: Listener, why: tuple[str, str]) -> Finding:
    code, text = why
    host, port = listener.address
    if code == "EADDRINUSE":
        leave_out = (
            " (or leave `port` out: a free one is chosen)" if listener.key[-1] == "port" and listener.service else ""
        )
        return Finding(
            Severity.ERROR,
            f"port {port} on {host} is already in use",
            service=listener.service,
            reason="another process listens on it",
            fix=f"stop what holds it (`ss -ltnp 'sport = :{port}'` shows it), or choose another port{leave_out}",
            code="port-busy",
            key=listener.key,
        )
    reason, fix = _UNAVAILABLE.get(code, (text, ""))
    return Finding(
        Severity.ERROR,
        f"cannot listen on {host}:{port}: {text}",
        service=listener.service,
        reason=reason,
        fix=fix,
        code="address-unavailable",
        key=listener.key,
    )
