"""The contract of a runtime: wrap an engine command for where it runs (here, a container, an env)."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Protocol

from servestack.engines.base import EngineCommand, EngineConfig


@dataclass(frozen=True)
class Launch:
    """A process ready to start: `env` holds only what is added to the inherited environment."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)

    def display(self) -> str:
        """The command as a shell line, secret-looking environment values masked."""
        env = " ".join(f"{k}=***" if _secret(k) else f"{k}={shlex.quote(v)}" for k, v in self.env.items())
        line = shlex.join(self.argv)
        return f"{env} {line}" if env else line


def _secret(name: str) -> bool:
    return any(word in name.upper() for word in ("TOKEN", "KEY", "SECRET", "PASSWORD"))


class Runtime(Protocol):
    kind: str

    def wrap(self, command: EngineCommand, config: EngineConfig, env: dict[str, str]) -> Launch:
        """Turn an engine command plus the service's environment into a process to start."""
        ...
