"""Fault injection: what the simulator does to a generation request besides serving it.

Faults mimic what real engines do when they go wrong: an error answer (HTTP 500 with an OpenAI
error body, as vLLM answers an engine exception), a wedged engine (the request is accepted and
never answered while /health still says 200), and a crash (the process exits at once with status
70, cutting every open connection; the supervisor sees an engine that died). The error rate and
the hang can be changed while running (`POST /sim/faults`), so a test can break a healthy replica
and mend it again.
"""

from __future__ import annotations

import os
import random
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from enum import Enum
from typing import NoReturn

from servestack.errors import BadRequest

CRASH_EXIT_CODE = 70  # EX_SOFTWARE


class FaultAction(Enum):
    SERVE = "serve"
    FAIL = "fail"
    HANG = "hang"


@dataclass
class Faults:
    """The faults in force; mutable so that they can be switched while the simulator runs."""

    error_rate: float = 0.0
    hang: bool = False
    crash_after_requests: int | None = None

    def as_dict(self) -> dict[str, object]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def crash_process(reason: str) -> NoReturn:
    """Exit hard, like an engine killed by a fault: no cleanup, no answers to open requests."""
    sys.stderr.write(f"sim: crashing on purpose ({reason})\n")
    sys.stderr.flush()
    os._exit(CRASH_EXIT_CODE)


class FaultInjector:
    """Decides, request by request, whether to serve, fail, hang or crash."""

    def __init__(self, faults: Faults, rng: random.Random, crash: Callable[[str], None] = crash_process) -> None:
        self.faults = faults
        self.rng = rng
        self.crash = crash
        self.requests = 0

    def on_request(self) -> FaultAction:
        """Count one generation request and pick its fate (a crash does not return in a real process)."""
        self.requests += 1
        faults = self.faults
        limit = faults.crash_after_requests
        if limit is not None and self.requests > limit:
            self.crash(f"crash_after_requests={limit}")
            return FaultAction.HANG  # only reached when `crash` is a test double: the process would be gone
        if faults.hang:
            return FaultAction.HANG
        if faults.error_rate and self.rng.random() < faults.error_rate:
            return FaultAction.FAIL
        return FaultAction.SERVE

    def update(self, changes: Mapping[str, object]) -> None:
        """Apply changes from `POST /sim/faults`; unknown keys and bad values are a BadRequest."""
        known = {f.name for f in fields(Faults)}
        for key, value in changes.items():
            if key not in known:
                raise BadRequest(f"unknown fault {key!r} (known: {', '.join(sorted(known))})", param=key)
            setattr(self.faults, key, _checked(key, value))
        if "crash_after_requests" in changes:
            self.requests = 0


def _checked(key: str, value: object) -> object:
    if key == "error_rate" and isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1:
        return float(value)
    if key == "hang" and isinstance(value, bool):
        return value
    if key == "crash_after_requests" and (value is None or (isinstance(value, int) and value >= 0)):
        return value
    raise BadRequest(f"invalid value for {key!r}: {value!r}", param=key)
