"""What an engine's startup log says it allocated, and the contract of a parser of that log.

Each engine adapter declares a parser (`startup_log`): the text of one start in, the figures the engine
itself states out (KV tokens, KV bytes and weight bytes per GPU, per device where llama.cpp splits layers).
Parsers are pure and read every wording of those lines they know across the engine's releases; a figure
the log does not state stays None, never guessed. An engine that prints nothing usable declares `Silent`
with the reason. The supervisor reads a start's log once the engine is ready and records the figures beside
the plan's prediction (`supervisor/calibration.py`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

GIB = 2**30
MIB = 2**20
NUMBER = r"-?[\d,]*\.?\d+"  # 1.5, -1.05, 178,880
LINES_KEPT = 12  # the lines a record keeps as evidence: enough for every rank's line of a TP 8 start

# llama.cpp names host memory `CPU`, `CPU_Mapped`, `CPU_REPACK`, `CUDA_Host`; every other buffer is a device's.
HOST_DEVICE = re.compile(r"^CPU|_Host$")


@dataclass(frozen=True)
class Device:
    """One device's buffers as llama.cpp names them (`CUDA0`, `CPU_Mapped`, `VRAM`), in bytes."""

    name: str
    weights_bytes: int = 0
    kv_bytes: int = 0

    @property
    def on_gpu(self) -> bool:
        return HOST_DEVICE.search(self.name) is None


@dataclass(frozen=True)
class Allocation:
    """The figures one start of an engine stated in its log (None: not stated).

    `kv_bytes` and `weights_bytes` are per GPU: what one TP rank holds (the smallest KV pool of the ranks,
    which the engine sizes them all by; the largest weights), or for layer splits the GPU holding the most;
    on the CPU, host memory. `lines` are the lines they were read from.
    """

    kv_tokens: int | None = None
    kv_bytes: int | None = None
    weights_bytes: int | None = None
    devices: tuple[Device, ...] = ()
    version: str | None = None
    lines: tuple[str, ...] = ()

    @property
    def stated(self) -> bool:
        """Whether the log stated any figure at all."""
        return any(value is not None for value in (self.kv_tokens, self.kv_bytes, self.weights_bytes))


class StartupLog(Protocol):
    def parse(self, log: str) -> Allocation:
        """The figures `log` (the lines of one start) states. Pure."""
        ...


@dataclass(frozen=True)
class Silent:
    """An engine whose startup log states no figure to calibrate against, and why."""

    reason: str


@dataclass
class Evidence:
    """The lines a parser read its figures from (by where they start in the log)."""

    lines: dict[int, str] = field(default_factory=dict)

    def matches(self, pattern: re.Pattern[str], log: str) -> Iterator[re.Match[str]]:
        """Every match of `pattern` (within one line), remembering the line of each one read.

        Patterns start with a literal: the regex engine then skips ahead to it, fast on a llama.cpp
        log of a few hundred KiB; what comes before it on the line is read with `line_of`.
        """
        for match in pattern.finditer(log):
            start, line = line_of(log, match)
            self.lines[start] = line.strip()
            yield match

    def kept(self) -> tuple[str, ...]:
        """The lines in log order, the first LINES_KEPT of them."""
        return tuple(self.lines[start] for start in sorted(self.lines)[:LINES_KEPT])


def line_of(log: str, match: re.Match[str]) -> tuple[int, str]:
    """Where the line of `match` starts, and the line."""
    start = log.rfind("\n", 0, match.start()) + 1
    end = log.find("\n", match.end())
    return start, log[start : end if end >= 0 else len(log)]


def matched(match: re.Match[str]) -> str:
    """The group of the one alternative of a pattern that matched."""
    return next(group for group in match.groups() if group is not None)


def number(text: str) -> float:
    """A number as an engine prints it: `178,880` → 178880.0."""
    return float(text.replace(",", ""))


def scaled(text: str, unit: int) -> int:
    """`12.13` GiB → bytes."""
    return round(number(text) * unit)
