"""`servestack up` with simulated engines: what the gateway tells a client about a model that cannot
answer — a prompt longer than its context, a stopped service, a failed one — and what /health says."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port, run_cli

pytestmark = pytest.mark.e2e

STACK = """
version: 1
services:
  chat:
    engine: sim
    model: sim
    context_length: 4096
    args: ["--instant"]
  doomed:
    engine: sim
    model: sim
    served_names: [doomed]
    args: ["--instant", "--crash-after-seconds", "2"]
    restart: never
"""


def ask(url: str, model: str, content: str = "hi") -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": 4}
    return httpx.post(url + "/v1/chat/completions", json=body, timeout=60)


def health(url: str) -> httpx.Response:
    return httpx.get(url + "/health", timeout=5)


def wait_for_health(url: str, services: dict[str, str], timeout: float = 60) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            response = health(url)
            if response.json()["services"] == services:
                return response
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    pytest.fail(f"/health never said {services}")


@pytest.fixture
def stack_up(home: Path, tmp_path: Path) -> Iterator[str]:
    stack = tmp_path / "stack.yaml"
    stack.write_text(STACK)
    port = free_port()
    log = (tmp_path / "up.log").open("w")
    up = subprocess.Popen(
        [sys.executable, "-m", "servestack", "up", "-f", str(stack), "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy(),
    )  # fmt: skip
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        up.send_signal(signal.SIGINT)
        up.wait(timeout=60)
        log.close()


def test_the_gateway_says_why_a_model_cannot_answer(stack_up: str) -> None:
    url = stack_up
    wait_for_health(url, {"chat": "ready", "doomed": "failed"})  # doomed crashes 2 s after it is ready

    began = time.monotonic()
    too_long = ask(url, "chat", "word " * 6_000_000)  # 30 MB, at least 117,188 tokens
    refused_in = time.monotonic() - began
    error = too_long.json()["error"]
    assert too_long.status_code == 400 and error["code"] == "context_length_exceeded" and error["param"] == "messages"
    assert "4,096 tokens" in error["message"]
    assert ask(url, "chat").status_code == 200

    failed = ask(url, "doomed")
    error = failed.json()["error"]
    assert failed.status_code == 503 and "retry-after" not in failed.headers and error["code"] == "model_failed"
    assert "last error: " in error["message"] and "crashing on purpose" in error["message"]
    assert "`servestack start doomed`" in error["message"]
    degraded = health(url)
    assert degraded.status_code == 200 and degraded.json()["status"] == "degraded"

    assert run_cli("stop", "chat").returncode == 0
    stopped = ask(url, "chat")
    error = stopped.json()["error"]
    assert stopped.status_code == 503 and "retry-after" not in stopped.headers and error["code"] == "model_stopped"
    assert "`servestack start chat`" in error["message"]
    down = health(url)
    assert down.status_code == 503 and down.json() == {
        "status": "unavailable",
        "services": {"chat": "stopped", "doomed": "failed"},
    }

    assert run_cli("start", "chat").returncode == 0
    assert ask(url, "chat").status_code == 200
    print(f"\n30 MB prompt refused in {refused_in:.2f}s")
