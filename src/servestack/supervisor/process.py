"""Engine processes: start one in its own process group with its log file; stop the whole group.

A new session per engine means SIGTERM/SIGKILL reach every process the engine spawned (tensor-parallel
workers included), and a Ctrl-C in the controller's terminal does not hit the engines directly: the
controller stops them in order. An engine in a named container is stopped by that name first: the
group holds only the container's client, and a killed client leaves its container running.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, BinaryIO

from servestack.errors import RuntimeUnavailable

if TYPE_CHECKING:
    from servestack.runtimes import Container, Launch

GROUP_POLL_SECONDS = 0.05
NO_MARK: Mapping[str, str] = MappingProxyType({})
START_HEADER = "=== servestack "  # opens each start's part of a log: the time and the command
TAIL_WINDOW = 256 * 1024  # bytes read from a log's end: probe lines can fill a smaller window
START_READ_LIMIT = 16 * 2**20  # bytes of one start's lines read at most: llama.cpp prints ~200 KiB at start


class EngineProcess:
    """A running engine on this machine: its leader process and process group (an `EngineHandle`)."""

    def __init__(
        self,
        proc: asyncio.subprocess.Process,
        log_path: Path,
        log_offset: int = 0,
        container: Container | None = None,
    ) -> None:
        self._proc = proc
        self.pid = proc.pid
        self.pgid = proc.pid  # start_new_session makes the leader's pid the group id
        self.log_path = log_path
        self.log_offset = log_offset  # where this start's part of the log begins (its header line)
        self.container = container

    @classmethod
    async def spawn(
        cls,
        launch: Launch,
        log_path: Path,
        *,
        mark: Mapping[str, str] = NO_MARK,
        inherited: Mapping[str, str] | None = None,
    ) -> EngineProcess:
        """Start `launch` in a new session, output to `log_path`; `mark` joins its environment (not its log line).

        The engine inherits `inherited` (default: this process's environment) plus the launch's `env`.
        A leftover container holding the launch's container name is removed first.
        """
        if launch.container:
            await launch.container.remove()
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            offset = write_start_header(log, launch)
            base = os.environ if inherited is None else inherited
            try:
                proc = await asyncio.create_subprocess_exec(
                    *launch.argv,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=log,
                    stderr=asyncio.subprocess.STDOUT,
                    env={**base, "PYTHONUNBUFFERED": "1", **launch.env, **mark},
                    start_new_session=True,
                )
            except FileNotFoundError:
                raise RuntimeUnavailable(f"cannot start the engine: {launch.argv[0]!r} not found") from None
            except PermissionError:
                raise RuntimeUnavailable(f"cannot start the engine: {launch.argv[0]!r} is not executable") from None
        return cls(proc, log_path, offset, launch.container)

    def read_log(self, limit: int = START_READ_LIMIT) -> str:
        """What this start wrote to its log so far (after its header line), at most `limit` bytes."""
        return read_start(self.log_path, self.log_offset, limit)

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode

    @property
    def lost(self) -> str | None:
        return None  # a process on this machine always leaves an exit code

    async def wait(self) -> int:
        return await self._proc.wait()

    async def stop(self, timeout: float) -> int:
        """SIGTERM the group, wait up to `timeout`, then SIGKILL what is left. Returns the exit code.

        An engine's container is stopped by name first (SIGTERM, SIGKILL after `timeout`) and removed
        last, also when its client is gone already.
        """
        if self.container:
            await self.container.stop(timeout)
        if self._proc.returncode is None or group_alive(self.pgid):
            signal_group(self.pgid, signal.SIGTERM)
            try:
                await asyncio.wait_for(self._wait_group(), timeout)
            except TimeoutError:
                signal_group(self.pgid, signal.SIGKILL)
                await self._wait_group()
        if self.container:
            await self.container.remove()
            self.container = None  # gone: stopping again has nothing to do by name
        return await self._proc.wait()

    async def _wait_group(self) -> None:
        await self._proc.wait()
        while group_alive(self.pgid):
            await asyncio.sleep(GROUP_POLL_SECONDS)


def write_start_header(log: BinaryIO, launch: Launch) -> int:
    """Open a start's part of an engine log (the time and the command); the offset where that part begins."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    separator = "\n" if log.tell() else ""
    offset = log.tell() + len(separator)
    log.write(f"{separator}{START_HEADER}{stamp}: {launch.display()}\n".encode())
    log.flush()
    return offset


def read_start(log_path: Path, offset: int, limit: int = START_READ_LIMIT) -> str:
    """What the start whose part of `log_path` begins at `offset` wrote after its header (at most `limit` bytes)."""
    try:
        with log_path.open("rb") as f:
            f.seek(offset)
            f.readline()  # the header: the command, not the engine's words
            return f.read(limit).decode(errors="replace")
    except FileNotFoundError:
        return ""


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def signal_group(pgid: int, sig: signal.Signals) -> None:
    """Send `sig` to a process group; a group that is gone already is no error."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def tail_lines(path: Path, count: int = 20, *, hide: tuple[str, ...] = ()) -> list[str]:
    """The last `count` lines of a log file (empty if it does not exist), leaving out lines containing any of `hide`."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - TAIL_WINDOW))
            decoded = (line.decode(errors="replace") for line in f.read().splitlines())
            lines = deque((line for line in decoded if not is_hidden(line, hide)), maxlen=count)
    except FileNotFoundError:
        return []
    return list(lines)


def is_hidden(line: str, hide: tuple[str, ...]) -> bool:
    return any(marker in line for marker in hide)
