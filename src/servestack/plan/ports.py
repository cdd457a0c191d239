"""Ports: what the stack listens on (the gateway, every service's `port`, ports passed through `args` as
`--port N`), and conflicts among them.

The stack schema already refuses two services with the same `port:`; a port hidden in `args` (or a
service whose `args` repeat another's port) only shows up here. Whether a port is free on this
machine is a host fact (`plan/host.py`).
"""

from __future__ import annotations

from dataclasses import dataclass

from servestack.plan.model import Finding, Severity
from servestack.stack import KeyPath, Stack

PORT_FLAGS = ("--port", "-p")


@dataclass(frozen=True)
class Listener:
    """One address the stack will listen on, and the setting that asks for it."""

    key: KeyPath  # ("gateway", "port"), ("services", NAME, "port") or ("services", NAME, "args")
    host: str
    port: int

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    @property
    def service(self) -> str | None:
        return str(self.key[1]) if self.key[0] == "services" else None

    @property
    def owner(self) -> str:
        return f"service {self.service}" if self.service else "the gateway"


def listeners(stack: Stack) -> list[Listener]:
    """The gateway's address, then each service's fixed ports (its `port`, then ports in its `args`), each once."""
    found = [Listener(("gateway", "port"), stack.gateway.host, stack.gateway.port)]
    for name, service in stack.services.items():
        ports = {service.port: "port"} if service.port is not None else {}
        ports |= {port: "args" for port in args_ports(service.args) if port not in ports}
        found += [Listener(("services", name, key), service.host, port) for port, key in ports.items()]
    return found


def port_findings(stack: Stack) -> list[Finding]:
    owners: dict[int, str] = {}
    findings = []
    for listener in listeners(stack):
        owner = owners.setdefault(listener.port, listener.owner)
        if owner != listener.owner:
            name = listener.service
            findings.append(
                Finding(
                    Severity.ERROR,
                    f"port {listener.port} of service {name} is already used by {owner}",
                    service=name,
                    reason="two processes cannot listen on one port",
                    fix=f"give {name} another port (or leave `port` out to get a free one)",
                    code="port-conflict",
                    key=listener.key,
                )
            )
    return findings


def args_ports(args: list[str]) -> list[int]:
    """Ports given as `--port N`, `--port=N` or `-p N` in extra engine flags."""
    ports = []
    for i, arg in enumerate(args):
        flag, eq, value = arg.partition("=")
        if flag not in PORT_FLAGS:
            continue
        if not eq:
            value = args[i + 1] if i + 1 < len(args) else ""
        if value.isdigit():
            ports.append(int(value))
    return ports
