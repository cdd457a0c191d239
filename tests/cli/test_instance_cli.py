"""`status`, `ps`, `logs`, `stop` and `up -d` against a running instance of simulated engines, as a user types them."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import run_cli

STACK = """
version: 1
services:
  chat:
    engine: sim
    model: sim
    replicas: 2
  solo:
    engine: sim
    model: sim
"""


def status() -> dict:
    return json.loads(run_cli("status", "--json").stdout)


def replica(current: dict, service: str, index: int) -> dict:
    return next(r for r in current["services"] if r["service"] == service and r["replica"] == index)


def wait_for(predicate, timeout: float = 30) -> dict:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        current = status()
        if predicate(current):
            return current
        assert time.monotonic() < deadline, f"condition not met; last status: {current}"
        time.sleep(0.1)


@pytest.fixture
def instance(home: Path, tmp_path: Path, port: int, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """`servestack up -d` of two simulated services (chat with two replicas); `down` afterwards."""
    monkeypatch.setenv("SERVESTACK_RESTART_BACKOFF", "0.1")
    stack = tmp_path / "stack.yaml"
    stack.write_text(STACK)
    result = run_cli("up", "-d", "-f", str(stack), "--port", str(port), timeout=120)
    assert result.returncode == 0, result.stderr
    try:
        yield home
    finally:
        run_cli("down")


def test_status_tells_what_happened_to_a_killed_replica(instance: Path) -> None:
    before = replica(status(), "chat", 1)
    os.killpg(before["pgid"], signal.SIGKILL)
    after = replica(
        wait_for(lambda s: replica(s, "chat", 1)["restarts"] == 1 and replica(s, "chat", 1)["status"] == "ready"),
        "chat",
        1,
    )
    assert "exited with signal 9, SIGKILL" in after["last_error"]
    exits = [e for e in after["events"] if e["kind"] == "exited"]
    assert exits and exits[-1]["signal"] == "SIGKILL" and exits[-1]["message"].endswith("restarting in 0.1s")

    table = run_cli("status").stdout
    assert "recent events" in table
    assert "chat#1  exited (signal 9, SIGKILL) — restarting in 0.1s" in table
    assert "chat#1  back after restart 1" in table


def test_ps_lists_each_service_once(instance: Path) -> None:
    rows = run_cli("ps").stdout.splitlines()
    assert rows[0].split()[:4] == ["SERVICE", "STATE", "ENGINE", "READY"]
    assert rows[1].split()[:4] == ["chat", "ready", "sim", "2/2"] and rows[2].split()[:4] == [
        "solo",
        "ready",
        "sim",
        "1/1",
    ]
    listed = json.loads(run_cli("ps", "--json").stdout)
    chat = listed["services"][0]
    assert listed["running"] and chat["service"] == "chat" and chat["ready"] == 2 and len(chat["ports"]) == 2

    assert run_cli("stop", "solo").returncode == 0
    assert run_cli("ps").stdout.splitlines()[2].split()[:4] == ["solo", "stopped", "sim", "0/1"]


def test_steering_mistakes_are_one_clear_line(instance: Path) -> None:
    one_replica = run_cli("stop", "chat#1")
    assert one_replica.returncode == 1 and "Traceback" not in one_replica.stderr
    assert "error: 'chat#1' is one replica of 'chat'; stop acts on a whole service" in one_replica.stderr
    assert "fix: `servestack stop chat`" in one_replica.stderr

    unknown = run_cli("restart", "nope")
    assert unknown.returncode == 1 and "Traceback" not in unknown.stderr
    assert "no service 'nope' in the running stack (services: chat, solo)" in unknown.stderr
    assert replica(status(), "chat", 1)["status"] == "ready"  # nothing was touched


def test_steering_with_nothing_running_says_how_to_start(home: Path) -> None:
    result = run_cli("stop", "chat")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "error: nothing is running" in result.stderr and "servestack up -d chat" in result.stderr
    assert "nothing is running" in run_cli("ps").stdout


def test_a_failed_up_d_shows_its_own_error_not_an_earlier_one(home: Path, tmp_path: Path, port: int) -> None:
    def failing_up(service: str) -> subprocess.CompletedProcess[str]:
        stack = tmp_path / f"{service}.yaml"
        stack.write_text(f"services:\n  {service}:\n    engine: sim\n    model: sim\n    args: ['--no-such-flag']\n")
        return run_cli("up", "-d", "-f", str(stack), "--port", str(port), timeout=120)

    first = failing_up("first")
    assert first.returncode == 1
    second = failing_up("second")
    assert second.returncode == 1 and "Traceback" not in second.stderr
    assert "error: servestack engine simulator exited with code 2" in second.stderr
    assert "--no-such-flag" in second.stderr  # the engine's own words
    assert "first" not in second.stderr  # nothing of the earlier run
    logs = home / "logs"
    assert "first" in (logs / "servestack.log.1").read_text() and "first" not in (logs / "servestack.log").read_text()


def test_logs_show_every_replica_with_its_name_and_hide_probe_lines(home: Path) -> None:
    logs = home / "logs"
    logs.mkdir(parents=True)
    probe = 'INFO:     127.0.0.1:41622 - "GET /docs HTTP/1.1" 200 OK'
    (logs / "chat.0.log").write_text(f"loading\n{probe}\nready\n")
    (logs / "chat.1.log").write_text(f"loading too\n{probe}\n")

    both = run_cli("logs", "chat").stdout.splitlines()
    assert both == ["chat   | loading", "chat   | ready", "chat#1 | loading too"]
    assert run_cli("logs", "chat", "--replica", "1").stdout.splitlines() == ["loading too"]
    assert run_cli("logs", "chat#1").stdout.splitlines() == ["loading too"]
    missing = run_cli("logs", "chat", "--replica", "5")
    assert missing.returncode == 1 and "chat has no replica 5 with a log" in missing.stderr


def test_logs_follow_prints_new_lines_of_every_replica(home: Path) -> None:
    logs = home / "logs"
    logs.mkdir(parents=True)
    for index in (0, 1):
        (logs / f"chat.{index}.log").write_text("old\n")
    # Ctrl-C as a terminal sends it, whatever this test runs under: a shell's background job inherits
    # SIGINT ignored, and Python then leaves it ignored (the follower ran on for an hour once).
    follow = subprocess.Popen(
        [sys.executable, "-m", "servestack", "logs", "chat", "-f", "-n", "0"],
        stdout=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        time.sleep(1.5)  # it has opened both files
        with (logs / "chat.1.log").open("a") as f:
            f.write("from one\n")
        with (logs / "chat.0.log").open("a") as f:
            f.write("from zero\n")
        assert follow.stdout is not None
        os.set_blocking(follow.stdout.fileno(), False)
        printed = b""
        deadline = time.monotonic() + 15
        while printed.count(b"\n") < 2 and time.monotonic() < deadline:
            with contextlib.suppress(BlockingIOError):
                printed += os.read(follow.stdout.fileno(), 4096)
            time.sleep(0.05)
        assert set(printed.decode().splitlines()) == {"chat#1 | from one", "chat   | from zero"}
    finally:
        follow.send_signal(signal.SIGINT)
        try:
            follow.wait(timeout=10)
        except subprocess.TimeoutExpired:
            follow.kill()  # leave nothing running, then fail
            follow.wait()
            raise
