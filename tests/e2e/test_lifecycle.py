"""Lifecycle of a detached instance with the real default engine: restarts, start/stop/restart, no orphans."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from servestack.supervisor import group_alive, pid_alive
from tests.conftest import run_cli

pytestmark = pytest.mark.e2e

CHAT = {"model": "smollm2", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}


def status() -> dict:
    return json.loads(run_cli("status", "--json").stdout)


def wait_for(predicate, timeout: float = 60) -> dict:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = status()
        if predicate(current):
            return current
        time.sleep(0.2)
    pytest.fail(f"condition not met; last status: {current}")


def service(current: dict) -> dict:
    [replica] = current["services"]
    return replica


@pytest.fixture
def detached(home: Path, port: int) -> Iterator[str]:
    result = run_cli("up", "-d", "--port", str(port), timeout=120)
    assert result.returncode == 0, result.stderr
    assert "servestack is up in the background" in result.stdout
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        run_cli("down")


def test_killed_engine_is_restarted_and_serves_again(detached: str) -> None:
    before = service(status())
    os.killpg(before["pgid"], signal.SIGKILL)
    after = wait_for(lambda s: service(s)["restarts"] == 1 and service(s)["status"] == "ready")
    assert service(after)["pid"] != before["pid"]
    assert "exited with signal 9, SIGKILL" in service(after)["last_error"]
    assert httpx.post(f"{detached}/v1/chat/completions", json=CHAT, timeout=30).status_code == 200
    table = run_cli("status").stdout
    assert "1" in table.split("smollm2")[1]
    assert "smollm2  exited (signal 9, SIGKILL) — restarting in 1s" in table
    assert "smollm2  back after restart 1" in table


def test_stop_start_restart_a_service(detached: str) -> None:
    stopped = run_cli("stop", "smollm2")
    assert stopped.returncode == 0, stopped.stderr
    assert service(status())["status"] == "stopped"
    down = httpx.post(f"{detached}/v1/chat/completions", json=CHAT, timeout=30)
    assert down.status_code == 503 and down.json()["error"]["code"] == "model_stopped"
    assert "`servestack start smollm2`" in down.json()["error"]["message"]

    assert run_cli("start", "smollm2").returncode == 0
    assert service(status())["status"] == "ready"
    restarted = run_cli("restart", "smollm2")
    assert restarted.returncode == 0 and "restarted and ready" in restarted.stdout
    assert httpx.post(f"{detached}/v1/chat/completions", json=CHAT, timeout=30).status_code == 200

    unknown = run_cli("restart", "nope")
    assert unknown.returncode == 1 and "no service 'nope'" in unknown.stderr


def start_foreground(port: int) -> tuple[subprocess.Popen[str], dict]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "servestack", "up", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    current = wait_for(lambda s: s["running"] and s["services"] and service(s)["status"] == "ready")
    return proc, service(current)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_no_orphans_after_a_signal(home: Path, port: int, sig: signal.Signals) -> None:
    proc, replica = start_foreground(port)
    proc.send_signal(sig)
    assert proc.wait(timeout=30) == 0
    assert not group_alive(replica["pgid"])


def test_the_engine_dies_with_a_sigkilled_controller(home: Path, port: int) -> None:
    proc, replica = start_foreground(port)
    proc.kill()
    proc.wait(timeout=10)
    with pytest.raises(ConnectionRefusedError):  # nothing holds the gateway's port any more
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    deadline = time.monotonic() + 15
    while group_alive(replica["pgid"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not group_alive(replica["pgid"])  # without `down`
    assert not pid_alive(replica["pid"])
    result = run_cli("down")
    assert result.returncode == 0 and "leftover" not in result.stdout
