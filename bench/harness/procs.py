"""Processes for benchmarks: start pinned to a core, wait until they answer, stop their whole group.

Every process runs in its own session (process group), so stopping it also stops the workers it
forked (nginx, uvicorn's engines); logs go to files in the run's temporary directory.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class HarnessError(Exception):
    """A benchmark process did not start or answer; the message says which and where its log is."""


class Proc:
    """One benchmark process (and its children), optionally pinned to CPUs with `taskset`."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_dir: Path,
        *,
        cpus: str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        command = ["taskset", "-c", cpus, *argv] if cpus is not None else list(argv)
        with self.log_path.open("wb") as log:
            self.popen = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                cwd=cwd,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def wait_http(self, url: str, *, timeout: float = 60.0, headers: Mapping[str, str] | None = None) -> None:
        """Block until GET `url` answers 200; raise if the process exits or time runs out."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if not self.alive():
                raise HarnessError(f"{self.name} exited ({self.popen.returncode}); {self.log_path}:\n{self.log_tail()}")
            status, last = http_status(url, headers)
            if status == 200:
                return
            time.sleep(0.1)
        raise HarnessError(f"{self.name} did not answer {url} in {timeout:g}s ({last}); {self.log_path}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        """Signal the process group, wait, then kill what is left."""
        if not self.alive():
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, sig)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            self.popen.wait(5)


def http_status(url: str, headers: Mapping[str, str] | None = None, timeout: float = 2.0) -> tuple[int, str]:
    request = urllib.request.Request(url, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, "200"
    except urllib.error.HTTPError as exc:
        return exc.code, f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        return 0, str(exc)


def pin(pid: int, cpus: str) -> None:
    """Move a running process (all its threads) to `cpus`."""
    subprocess.run(["taskset", "-a", "-pc", cpus, str(pid)], check=True, stdout=subprocess.DEVNULL)


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise HarnessError(f"timed out after {timeout:g}s waiting for {what}")


def tree_pids(root: int) -> list[int]:
    """`root` and every process descended from it (read from /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def cpu_seconds(pids: Sequence[int]) -> float:
    """User plus system CPU time these processes have used so far (exited ones count as 0)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / ticks
