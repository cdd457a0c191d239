"""One `servestack up` for every client suite: the real default engine (SmolLM2 on llama-cpp-python,
model `smollm2`) and the simulator (model `sim`, vLLM's API at 200 tokens/s), the usage ledger and
metrics on. The suites drive it with the clients people use and check what each engine gives them:
an answer, a mapped request, or a 400 that names the parameter.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from servestack.stack import load_default_stack
from tests.conftest import free_port

READY_TIMEOUT = 120
# What each engine of the stack can do, as its dialect declares it (engines/llamacpp.py, engines/sim.py).
ENGINES = ("smollm2", "sim")
JSON_MODE = {"smollm2": True, "sim": False}
TOOLS = {"smollm2": True, "sim": False}
LOGPROBS = {"smollm2": True, "sim": False}


@dataclass
class Stack:
    url: str
    home: Path
    env: dict[str, str]
    proc: subprocess.Popen[str]

    @property
    def v1(self) -> str:
        return f"{self.url}/v1"

    def ledger(self, request_id: str, timeout: float = 5.0) -> tuple[int, int] | None:
        """(status, stream) of the ledger row of `request_id`, once it is committed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            db = sqlite3.connect(self.home / "state" / "usage.db")
            try:
                row = db.execute("SELECT status, stream FROM requests WHERE request_id = ?", (request_id,)).fetchone()
            finally:
                db.close()
            if row is not None:
                return int(row[0]), int(row[1])
            time.sleep(0.1)
        return None

    def metric(self, model: str, status: int) -> float:
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        needle = f'servestack_requests_total{{model="{model}",status="{status}"}} '
        return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(needle))


def write_stack(path: Path, port: int) -> None:
    model = load_default_stack().services["smollm2"].model
    path.write_text(
        f"""version: 1
gateway:
  port: {port}
  usage: {{flush_interval: 0.05}}
  logs: {{format: json}}
services:
  smollm2:
    engine: llamacpp
    model: {model}
    served_names: [smollm2]
    context_length: 2048
  sim:
    engine: sim
    model: sim-model
    served_names: [sim]
    args: [--decode-rate, "200", --prefill-rate, "100000"]
"""
    )


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("clients")
    home, port = root / "home", free_port()
    env = {**os.environ, "SERVESTACK_HOME": str(home), "COLUMNS": "200"}
    write_stack(root / "stack.yaml", port)
    proc = subprocess.Popen(
        [sys.executable, "-m", "servestack", "up", "-f", str(root / "stack.yaml")],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    running = Stack(f"http://127.0.0.1:{port}", home, env, proc)
    try:
        _wait_until_ready(running)
        yield running
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_until_ready(stack: Stack) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if stack.proc.poll() is not None:
            pytest.fail(f"servestack up exited early:\n{stack.proc.stdout.read() if stack.proc.stdout else ''}")
        try:
            health = httpx.get(f"{stack.url}/health", timeout=2)
            if health.status_code == 200 and json.loads(health.text)["status"] == "ok":
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    pytest.fail("the stack was not ready in time")


@pytest.fixture(params=ENGINES)
def model(request: pytest.FixtureRequest) -> str:
    return str(request.param)
