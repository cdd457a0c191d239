"""One controller-kill trial: `kill -9` a `servestack up` at a random moment, then look at what it left.

Behind `bench/controller_kill.py` (50 trials, a table) and `tests/e2e/test_controller_kill.py` (a few).

A trial runs `servestack up` on a stack of simulated engines (three replicas, each refusing
connections for a while as if loading weights) in a fresh state dir, and kills it with SIGKILL:
- `startup`: after a random delay from launch, so the kill lands before, during or after the
  engines are spawned, and often between an engine's spawn and its record in the state dir;
- `load`: once every replica is ready, after a random time of requests through the gateway.
Then it checks that the gateway port refuses connections at once, counts the engines still
alive a little later (they must die with their controller), runs `servestack down`, and counts
every process still running for that state dir.

Processes are found without servestack's own bookkeeping: every process a trial starts inherits
its `SERVESTACK_HOME`, so a process whose environment holds it belongs to the trial.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

STACK = """
version: 1
services:
  chat:
    engine: sim
    model: sim
    replicas: 2
    args: ["--slow-start", "0.4", "--decode-rate", "200"]
  embed:
    engine: sim
    model: sim
    args: ["--slow-start", "0.4"]
"""
REPLICAS = 3
STARTUP_WINDOW = 2.5  # seconds after launch; `up` spawns its engines ~0.5 s in, they load for 0.4 s
LOAD_WINDOW = (0.2, 1.5)
ENGINE_GRACE = 15.0  # how long engines may take to die after their controller (SIGTERM first, then SIGKILL)
READY_TIMEOUT = 60.0
LOAD_THREADS = 4


@dataclass
class TrialResult:
    phase: str  # startup | load
    kill_after: float  # seconds after launch (startup) or after load began (load)
    engines_at_kill: int  # engine processes alive when the controller was killed
    unrecorded_at_kill: int  # of those, how many the state dir did not record yet
    port_refused: bool  # a connection to the gateway port right after the kill was refused
    engines_after_grace: int  # engines still alive ENGINE_GRACE after the kill, before `down`
    leftovers_after_down: int  # any process of the trial's state dir still running after `down`
    engines_gone_after: float | None  # seconds from the kill until no engine was left (None: some stayed)
    down_output: str = ""
    requests_sent: int = 0

    @property
    def clean(self) -> bool:
        return self.port_refused and self.engines_after_grace == 0 and self.leftovers_after_down == 0

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "clean": self.clean}


def run_trial(workdir: Path, phase: str, rng: random.Random, port: int) -> TrialResult:
    """One trial in `workdir` (a fresh directory); the gateway listens on `port`."""
    home = workdir / "home"
    stack = workdir / "stack.yaml"
    stack.write_text(STACK)
    env = {**os.environ, "SERVESTACK_HOME": str(home), "SERVESTACK_STOP_TIMEOUT": "5"}
    log = (workdir / "up.log").open("wb")
    up = subprocess.Popen(
        [sys.executable, "-m", "servestack", "up", "-f", str(stack), "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    stop_load = threading.Event()
    sent = [0]
    try:
        if phase == "startup":
            kill_after = rng.uniform(0, STARTUP_WINDOW)
        else:
            _wait_all_ready(home, up)
            kill_after = rng.uniform(*LOAD_WINDOW)
            sent = _start_load(port, stop_load)
        time.sleep(kill_after)
        engines = engine_pids(home)
        recorded = recorded_pids(home)
        up.send_signal(signal.SIGKILL)
        up.wait()
        killed_at = time.monotonic()
        refused = port_refuses(port)
    finally:
        stop_load.set()
        if up.poll() is None:
            up.kill()
            up.wait()
        log.close()
    survivors = _wait_gone(lambda: engine_pids(home), ENGINE_GRACE)
    engines_gone_after = time.monotonic() - killed_at
    down = subprocess.run(
        [sys.executable, "-m", "servestack", "down"], capture_output=True, text=True, env=env, timeout=120
    )
    leftovers = _wait_gone(lambda: trial_pids(home), ENGINE_GRACE)
    result = TrialResult(
        phase=phase,
        kill_after=round(kill_after, 3),
        engines_at_kill=len(engines),
        unrecorded_at_kill=len(engines - recorded),
        port_refused=refused,
        engines_after_grace=len(survivors),
        leftovers_after_down=len(leftovers),
        engines_gone_after=round(engines_gone_after, 2) if not survivors else None,
        down_output=(down.stdout + down.stderr).strip(),
        requests_sent=sent[0],
    )
    for pid in leftovers:  # never leave a trial's processes behind, whatever the result
        _kill_group(pid)
    return result


def trial_pids(home: Path) -> set[int]:
    """Every live process whose environment names `home` as SERVESTACK_HOME (this process excluded)."""
    needle = f"SERVESTACK_HOME={home}".encode()
    found = set()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            environ = Path(f"/proc/{name}/environ").read_bytes()
            state = Path(f"/proc/{name}/stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            continue
        if needle in environ.split(b"\0") and state != "Z":
            found.add(int(name))
    return found


def engine_pids(home: Path) -> set[int]:
    """The trial's simulated engines (`python -m servestack.sim`)."""
    engines = set()
    for pid in trial_pids(home):
        try:
            if b"servestack.sim" in Path(f"/proc/{pid}/cmdline").read_bytes():
                engines.add(pid)
        except OSError:
            continue
    return engines


def recorded_pids(home: Path) -> set[int]:
    """The engine pids the state dir records."""
    pids = set()
    for path in (home / "state" / "replicas").glob("*.json"):
        try:
            pid = json.loads(path.read_text()).get("pid")
        except (OSError, ValueError):
            continue
        if pid:
            pids.add(int(pid))
    return pids


def port_refuses(port: int) -> bool:
    """True when nothing accepts a connection on 127.0.0.1:`port` (a live socket there would)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return False
    except ConnectionRefusedError:
        return True
    except OSError:
        return False  # a timeout: something holds the port and does not answer


def _wait_all_ready(home: Path, up: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if up.poll() is not None:
            raise RuntimeError(f"servestack up exited with {up.returncode} before it was ready")
        statuses = []
        for path in (home / "state" / "replicas").glob("*.json"):
            try:
                statuses.append(json.loads(path.read_text())["status"])
            except (OSError, ValueError, KeyError):
                continue
        if len(statuses) == REPLICAS and all(s == "ready" for s in statuses):
            return
        time.sleep(0.05)
    raise RuntimeError("the trial's replicas were not ready in time")


def _start_load(port: int, stop: threading.Event) -> list[int]:
    """Send chat requests from a few threads until `stop`; returns a live one-element counter."""
    counter = [0]
    body = json.dumps({"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}).encode()

    def worker() -> None:
        while not stop.is_set():
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/v1/chat/completions", data=body, headers={"Content-Type": "application/json"}
            )
            try:
                with urllib.request.urlopen(request, timeout=5) as resp:
                    resp.read()
            except (urllib.error.URLError, OSError):
                time.sleep(0.05)
            counter[0] += 1

    for _ in range(LOAD_THREADS):
        threading.Thread(target=worker, daemon=True).start()
    return counter


def _wait_gone(find: Callable[[], set[int]], timeout: float) -> set[int]:
    """Poll `find()` until it returns nothing or `timeout` passes; return what is left."""
    deadline = time.monotonic() + timeout
    left = find()
    while left and time.monotonic() < deadline:
        time.sleep(0.02)
        left = find()
    return left


def _kill_group(pid: int) -> None:
    """SIGKILL a leftover's process group (the process alone if it shares this one's group)."""
    try:
        pgid = os.getpgid(pid)
        if pgid == os.getpgrp():
            os.kill(pid, signal.SIGKILL)
        else:
            os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
