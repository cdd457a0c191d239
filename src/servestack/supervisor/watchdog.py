"""Engines die with their controller, even when it is killed with SIGKILL.

A parent-death signal reaches only an engine's first process, not the workers it forks, and
setting one needs code between fork and exec, which is unsafe in a process with threads. Instead
the supervisor starts one small watchdog process per instance, in its own session, holding the
read end of a pipe whose write end only the controller has (engines never inherit it). When the
controller ends for any reason the kernel closes that end; the watchdog reads end-of-file and
stops the process group of every process carrying the controller's mark (`lineage.py`) — found by
scanning /proc, so an engine spawned a moment before the kill is found as well. A controller that
stops its engines itself says so first, and the watchdog just checks and leaves.

Run as `python -m servestack.supervisor.watchdog FD STOP_TIMEOUT MARK`.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

from servestack.supervisor.lineage import Mark, groups_of, stop_groups

CLEAN_CLOSE = b"engines stopped\n"
# After a controller died, look again for this long: a spawn under way when it died (fork done,
# exec not yet) shows its mark only once it has exec'd.
RESCAN_SECONDS, RESCAN_INTERVAL = 3.0, 0.1


class Watchdog:
    """The controller's side: start the watchdog process, and tell it when the engines are stopped."""

    def __init__(self, mark: Mark, stop_timeout: float, log_path: Path) -> None:
        self.mark = mark
        self.stop_timeout = stop_timeout
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None
        self._pipe: int | None = None

    def ensure_started(self) -> None:
        """Start the watchdog unless it runs; call before spawning anything it must watch."""
        if self._proc is not None:
            return
        read_end, self._pipe = os.pipe()  # both ends non-inheritable: engines never get them
        argv = [sys.executable, "-m", __name__, str(read_end), str(self.stop_timeout), self.mark.env_value]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                argv,
                pass_fds=(read_end,),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C in the controller's terminal must not reach it
            )
        os.close(read_end)

    def close(self) -> None:
        """Tell the watchdog the engines are stopped and let it go (it checks once, then exits)."""
        if self._pipe is None or self._proc is None:
            return
        with contextlib.suppress(BrokenPipeError):
            os.write(self._pipe, CLEAN_CLOSE)
        os.close(self._pipe)
        self._pipe = None
        self._proc.wait()


def main(argv: list[str]) -> int:
    fd, timeout, value = int(argv[0]), float(argv[1]), argv[2]
    mark = Mark.parse(value)
    if mark is None:
        print(f"watchdog: not a mark: {value!r}", file=sys.stderr)
        return 2
    clean = _wait_for_close(fd)
    _stop_marked(mark, timeout)
    if not clean:
        deadline = time.monotonic() + RESCAN_SECONDS
        while time.monotonic() < deadline:
            time.sleep(RESCAN_INTERVAL)
            _stop_marked(mark, timeout)
    return 0


def _wait_for_close(fd: int) -> bool:
    """Block until the controller's end of the pipe closes; True when it said its engines are stopped."""
    received = b""
    while chunk := os.read(fd, 64):
        received += chunk
    return received == CLEAN_CLOSE


def _stop_marked(mark: Mark, timeout: float) -> None:
    groups = groups_of(mark)
    if groups:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        print(f"{stamp} stopping process groups {sorted(groups)} left by controller {mark.owner}", flush=True)
        stop_groups(groups, timeout)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
