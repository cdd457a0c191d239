"""Engine logs for the console: what `servestack logs SERVICE -f` prints, as batches of lines.

The same files (each replica's `logs/SERVICE.N.log`), the same labels (`chat`, `chat#1`), the same lines
left out (what the engine writes for servestack's probes), with secrets masked. New lines are read a few
times a second; a log that does not exist yet (an on-demand replica never loaded) is waited for. The
stream ends when the instance stops, so an open page never holds the gateway's shutdown.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from servestack.controller.redact import Redactor
from servestack.errors import StateError
from servestack.gateway.console import LogLine
from servestack.supervisor import Replica
from servestack.supervisor.process import TAIL_WINDOW, is_hidden

POLL_SECONDS = 0.25
QUIET_SECONDS = 15.0  # an empty batch after this long without a line (the page's stream stays open)
MAX_READ = 1 << 20  # bytes read from one log per poll: a burst is sent in pieces, the loop is never held long


@dataclass
class _Followed:
    label: str
    path: Path
    hide: tuple[str, ...]
    file: BinaryIO | None = None
    pending: bytes = field(default=b"")

    def read_new(self) -> list[str]:
        """The complete lines written since the last read (opening the file once it exists)."""
        if self.file is None:
            try:
                self.file = self.path.open("rb")
            except FileNotFoundError:
                return []
        chunk = self.file.read(MAX_READ)
        if not chunk:
            return []
        *complete, self.pending = (self.pending + chunk).split(b"\n")
        decoded = (raw.decode(errors="replace") for raw in complete)
        return [line for line in decoded if not is_hidden(line, self.hide)]

    def tail(self, count: int) -> list[str]:
        """The last `count` lines now (up to TAIL_WINDOW bytes back); reading goes on from where they end."""
        try:
            self.file = self.path.open("rb")
        except FileNotFoundError:
            return []
        end = self.file.seek(0, os.SEEK_END)
        start = self.file.seek(max(0, end - TAIL_WINDOW))
        raw = self.file.read(end - start).split(b"\n")
        *complete, self.pending = (raw[1:] or [b""]) if start else raw  # a window's first line may be cut
        decoded = (line.decode(errors="replace") for line in complete)
        return list(deque((line for line in decoded if not is_hidden(line, self.hide)), maxlen=count))

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def choose_logs(replicas: list[Replica], service: str, replica: int | None) -> list[Replica]:
    """The replicas of `service` whose logs to show (one, or all in order); StateError when there is none."""
    found = sorted((r for r in replicas if r.plan.name == service), key=lambda r: r.index)
    if not found:
        raise StateError(f"no service {service!r} in the running stack")
    if replica is not None:
        found = [r for r in found if r.index == replica]
        if not found:
            raise StateError(f"{service} has no replica {replica}", fix=f"its log without ?replica=: all of {service}")
    return found


async def follow_logs(
    replicas: list[Replica],
    lines: int,
    redact: Redactor,
    running: Callable[[], bool],
    *,
    poll: float = POLL_SECONDS,
    quiet: float = QUIET_SECONDS,
) -> AsyncIterator[list[LogLine]]:
    """The last `lines` lines of each replica's log, then its new lines, until `running()` turns false."""
    followed = [_Followed(r.state.label, Path(r.state.log_path), r.engine.probe_log_lines) for r in replicas]
    try:
        yield [LogLine(log.label, redact(text)) for log in followed for text in log.tail(lines)]
        said = time.monotonic()
        while running():
            await asyncio.sleep(poll)
            batch = [LogLine(log.label, redact(text)) for log in followed for text in log.read_new()]
            if batch or time.monotonic() - said >= quiet:
                yield batch
                said = time.monotonic()
    finally:
        for log in followed:
            log.close()
