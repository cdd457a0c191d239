"""An engine's sleep mode: keep the process, give its GPU memory back, and take it again quickly.

What each engine needs is declared on its adapter (`sleep`, None when it has no such mode): the flags
and environment that switch the mode on at start, and the HTTP calls that put it to sleep and wake it.
The supervisor makes the calls (`supervisor/sleeping.py`); `supervisor/launch.py` adds the flags to
the command of a service that unloads by sleeping (`unload: sleep`), so `plan --show-commands` shows them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

NO_ENV: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True)
class HttpCall:
    """One request to the engine: method, path (with its query), and a JSON body (None: no body)."""

    method: str
    path: str
    body: Mapping[str, object] | None = None


@dataclass(frozen=True)
class SleepMode:
    """How to start an engine able to sleep, and how to put it to sleep and wake it."""

    flags: tuple[str, ...]
    sleep: HttpCall
    wake: HttpCall
    env: Mapping[str, str] = field(default_factory=lambda: NO_ENV)
    keeps: str = "its weights in host memory"  # what the sleeping process holds, for messages and docs
