"""The contract of a runtime: wrap an engine command for where it runs (here, a container, an env)."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from typing import Protocol

from servestack.engines.base import EngineCommand, EngineConfig
from servestack.runtimes.container import Container

_SECRET_WORDS = frozenset({"TOKEN", "KEY", "APIKEY", "SECRET", "PASSWORD", "PASSWD"})
MASK = "***"


@dataclass(frozen=True)
class Launch:
    """A process ready to start: `env` holds only what is added to the inherited environment.

    `container` is the named container it runs the engine in, if any: stopped by its name, not
    through the process.
    """

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    container: Container | None = None

    def display(self) -> str:
        """The command as a shell line, secrets masked (secret-looking variables and flag values)."""
        env = " ".join(f"{k}={MASK}" if is_secret(k) else f"{k}={shlex.quote(v)}" for k, v in self.env.items())
        line = shlex.join(masked_argv(self.argv))
        return f"{env} {line}" if env else line


def is_secret(name: str) -> bool:
    """Whether a variable or flag name looks like it holds a secret (`HF_TOKEN`, `--api-key`).

    Whole words only, so `--max-total-tokens` and `--tokenizer-path` stay visible.
    """
    return not _SECRET_WORDS.isdisjoint(re.split(r"[-_]+", name.upper()))


_FLAG = re.compile(r"^--?[A-Za-z][\w-]*$")


def masked_argv(argv: list[str]) -> list[str]:
    """`argv` with the values of secret-looking flags (`--api-key X`, `--api-key=X`) masked."""
    shown = []
    hide_next = False
    for arg in argv:
        name, eq, _ = arg.partition("=")
        if hide_next:
            shown.append(MASK)
        elif eq and _FLAG.match(name) and is_secret(name):
            shown.append(f"{name}={MASK}")
        else:
            shown.append(arg)
        hide_next = not hide_next and not eq and bool(_FLAG.match(arg)) and is_secret(arg)
    return shown


class Runtime(Protocol):
    kind: str

    def inside(self, config: EngineConfig) -> EngineConfig:
        """The config as the engine sees it where it runs (container paths, the interface to bind)."""
        ...

    def wrap(
        self,
        command: EngineCommand,
        config: EngineConfig,
        env: dict[str, str],
        *,
        name: str = "",
        forward: tuple[str, ...] = (),
    ) -> Launch:
        """Turn an engine command plus the environment it needs into a process to start.

        `config` is the plan's (host paths, host port, GPUs); `env` is what the engine must see.
        `name` names this replica on the machine (a container is given it); `forward` names variables
        the starting process sets in its own environment that the engine must see as well (a process
        inherits them, a container is passed them by name).
        """
        ...

    def wrap_probe(self, command: EngineCommand, env: dict[str, str], *, forward: tuple[str, ...] = ()) -> Launch:
        """A short tool run in the same place (the engine's `--version`, `--help`): no ports, no GPUs."""
        ...
