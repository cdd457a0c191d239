"""`kill -9` of `servestack up`: its engines die with it, its port refuses, `down` finds nothing left.

A handful of the trials `bench/controller_kill.py` runs fifty of (simulated engines, so each takes a
few seconds), and a direct look at what an engine inherited from its controller.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.controller_kill import port_refuses, run_trial, trial_pids
from tests.conftest import free_port

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("phase", ["startup", "load"])
def test_killed_controllers_leave_no_engine_and_no_open_port(tmp_path: Path, phase: str) -> None:
    rng = random.Random(phase)
    for n in range(3):
        workdir = tmp_path / f"trial-{n}"
        workdir.mkdir()
        result = run_trial(workdir, phase, rng, free_port())
        assert result.clean, result.as_dict()


def fd_targets(pid: int) -> set[str]:
    """What a process's descriptors point at: `socket:[123]`, `pipe:[45]`, a path. Left out: /dev/null,
    and the anonymous inodes of an event loop (`anon_inode:[eventpoll]` names a kind, not one object)."""
    targets = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target != "/dev/null" and not target.startswith("anon_inode:"):
            targets.add(target)
    return targets


def test_an_engine_holds_no_descriptor_of_its_controller(home: Path, tmp_path: Path) -> None:
    stack = tmp_path / "stack.yaml"
    stack.write_text("services:\n  chat:\n    engine: sim\n    model: sim\n")
    port = free_port()
    up = subprocess.Popen(
        [sys.executable, "-m", "servestack", "up", "-f", str(stack), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        record = home / "state" / "replicas" / "chat.0.json"
        deadline = time.monotonic() + 60
        while not (record.exists() and json.loads(record.read_text())["status"] == "ready"):
            assert time.monotonic() < deadline and up.poll() is None
            time.sleep(0.1)
        time.sleep(0.5)  # the control socket opens after the gateway
        engine = json.loads(record.read_text())["pid"]
        shared = fd_targets(engine) & fd_targets(up.pid)
        assert shared == set(), f"the engine inherited {shared} from its controller"

        up.send_signal(signal.SIGKILL)
        up.wait()
        assert port_refuses(port)
        deadline = time.monotonic() + 15
        while trial_pids(home) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert trial_pids(home) == set()  # the engine and the watchdog are gone, without `down`
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
        for pid in trial_pids(home):  # whatever a failure left behind (this test's processes only)
            os.kill(pid, signal.SIGKILL)
