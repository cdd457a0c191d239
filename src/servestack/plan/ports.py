"""Port conflicts: the gateway, every service's `port`, and ports passed through `args` (`--port N`).

The stack schema already refuses two services with the same `port:`; a port hidden in `args` (or a
service whose `args` repeat another's port) only shows up here.
"""

from __future__ import annotations

from servestack.plan.model import Finding, Severity
from servestack.stack import Stack

PORT_FLAGS = ("--port", "-p")


def port_findings(stack: Stack) -> list[Finding]:
    owners: dict[int, str] = {stack.gateway.port: "the gateway"}
    findings = []
    for name, service in stack.services.items():
        ports = dict.fromkeys([p for p in (service.port, *args_ports(service.args)) if p is not None])
        for port in ports:
            owner = owners.setdefault(port, f"service {name}")
            if owner != f"service {name}":
                findings.append(
                    Finding(
                        Severity.ERROR,
                        f"port {port} of service {name} is already used by {owner}",
                        service=name,
                        reason="two processes cannot listen on one port",
                        fix=f"give {name} another port (or leave `port` out to get a free one)",
                        code="port-conflict",
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
