"""`servestack up` under a low open-files limit: the gateway raises what it may, and running out of
descriptors is its own 503 (naming the limit), logged, and never held against the engine.

Each relayed stream holds two descriptors (the client's connection and the engine's). The engine here
is a simulator that streams one token a second, so every stream stays open while more are opened.
"""

from __future__ import annotations

import asyncio
import os
import re
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port

pytestmark = pytest.mark.e2e

STACK = """
version: 1
services:
  drip:
    engine: sim
    model: sim
    args: ["--decode-rate", "1", "--max-running", "1000", "--default-max-tokens", "60"]
"""
CHAT = {"model": "drip", "messages": [{"role": "user", "content": "hi"}], "stream": True}


def with_open_files(soft: int, hard: int) -> Callable[[], None]:
    return lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


class Up:
    def __init__(self, tmp_path: Path, soft: int, hard: int) -> None:
        stack = tmp_path / "stack.yaml"
        stack.write_text(STACK)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp_path / "up.log"
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "servestack", "up", "-f", str(stack), "--port", str(self.port)],
            stdout=self._log, stderr=subprocess.STDOUT, env=os.environ.copy(), preexec_fn=with_open_files(soft, hard),
        )  # fmt: skip

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log()
            try:
                if httpx.get(self.url + "/health", timeout=2).json()["services"] == {"drip": "ready"}:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        pytest.fail(f"servestack up was not ready in time:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=60)
        self._log.close()


@pytest.fixture
def start_up(home: Path, tmp_path: Path) -> Iterator[Callable[[int, int], Up]]:
    started: list[Up] = []

    def start(soft: int, hard: int) -> Up:
        up = Up(tmp_path, soft, hard)
        started.append(up)
        up.wait_ready()
        return up

    yield start
    for up in started:
        up.stop()


def open_files_limit(pid: int) -> tuple[int, int]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError("no open-files line in /proc/PID/limits")


def test_the_gateway_raises_its_soft_open_files_limit_to_the_hard_one(start_up: Callable[[int, int], Up]) -> None:
    up = start_up(256, 4096)
    assert open_files_limit(up.proc.pid) == (4096, 4096)
    room = re.search(r"room for ([\d,]+) streams at once", up.log())
    assert room is not None, up.log()
    assert 1900 < int(room.group(1).replace(",", "")) < 2048


async def hold_streams(url: str, count: int, release: asyncio.Event) -> list[httpx.Response | Exception]:
    """Open `count` streams at once; each is held (its answer's first chunk in) until `release`."""
    answers: list[httpx.Response | Exception] = []
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:

        async def one() -> None:
            try:
                async with client.stream("POST", "/v1/chat/completions", json=CHAT) as response:
                    if response.status_code != 200:
                        await response.aread()
                        answers.append(response)
                        return
                    await anext(response.aiter_bytes())
                    answers.append(response)
                    await release.wait()
            except httpx.HTTPError as exc:
                answers.append(exc)

        tasks = [asyncio.create_task(one()) for _ in range(count)]
        while len(answers) < count:
            await asyncio.sleep(0.1)
        release.set()
        await asyncio.gather(*tasks)
    return answers


def test_running_out_of_descriptors_is_the_gateways_own_503_and_spares_the_engine(
    start_up: Callable[[int, int], Up],
) -> None:
    up = start_up(256, 256)  # about 110 streams, once the gateway's own descriptors are counted
    answers = asyncio.run(hold_streams(up.url, 300, asyncio.Event()))

    failures = [a for a in answers if isinstance(a, Exception)]
    held = [a for a in answers if isinstance(a, httpx.Response) and a.status_code == 200]
    refused = [a for a in answers if isinstance(a, httpx.Response) and a.status_code == 503]
    assert failures == [] and len(held) + len(refused) == 300, (failures[:3], up.log()[-2000:])
    assert 60 <= len(held) <= 128 and refused, len(held)
    for response in refused:
        error = response.json()["error"]
        assert error["code"] == "too_many_open_files", error
        assert "open-files limit is 256" in error["message"] and "ulimit" in error["message"]

    health = httpx.get(up.url + "/health", timeout=5).json()
    assert health == {"status": "ok", "services": {"drip": "ready"}}  # its circuit did not open
    body = {**CHAT, "stream": False, "max_tokens": 2}
    assert httpx.post(up.url + "/v1/chat/completions", json=body, timeout=30).status_code == 200
    assert "The gateway is out of file descriptors: its open-files limit is 256" in up.log()
