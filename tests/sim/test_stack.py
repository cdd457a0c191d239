"""`engine: sim` in a stack: supervised like any engine, and served end to end behind the gateway."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest
from simtools import free_port

from servestack.plan import make_plan
from servestack.settings import Settings
from servestack.sim import CRASH_EXIT_CODE
from servestack.stack import parse_stack
from servestack.supervisor import ReplicaStatus, StateStore, Supervisor

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "sim-stack.yaml"
SERVESTACK = str(Path(sys.executable).with_name("servestack"))

STACK = """
version: 1
services:
  slow:
    engine: sim
    model: sim
    args: ["--slow-start", "0.5", "--warmup", "0.4"]
  doomed:
    engine: sim
    model: sim
    args: ["--crash-after-seconds", "1.5", "--instant"]
    restart: never
"""


def test_supervisor_waits_through_slow_start_and_warmup_and_sees_a_crash(tmp_path: Path) -> None:
    plan = make_plan(parse_stack(STACK, source="test", environ={}))
    settings = Settings(home=tmp_path)

    async def main() -> None:
        async with Supervisor(StateStore(settings.state_dir), settings) as supervisor:
            slow = supervisor.prepare(plan.services["slow"])
            doomed = supervisor.prepare(plan.services["doomed"])
            seconds, _ = await asyncio.gather(supervisor.start(slow), supervisor.start(doomed))
            assert seconds >= 0.85  # refused for 0.5 s, then 503 for 0.4 s
            async with httpx.AsyncClient() as http:
                assert (await http.get(slow.base_url + "/health")).status_code == 200
            deadline = time.monotonic() + 10
            while doomed.state.status is not ReplicaStatus.FAILED:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            assert f"exited with code {CRASH_EXIT_CODE}" in (doomed.state.last_error or "")
            assert "crashing on purpose (crash_after_seconds=1.5)" in (doomed.state.last_error or "")
            assert slow.state.status is ReplicaStatus.READY

    asyncio.run(main())


@pytest.fixture
def stack_up(tmp_path: Path):  # type: ignore[no-untyped-def]
    """`servestack up -f examples/sim-stack.yaml` on a free port, in its own state dir."""
    port = free_port()
    env = {**os.environ, "SERVESTACK_HOME": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    log = (tmp_path / "up.log").open("w")
    proc = subprocess.Popen(
        [SERVESTACK, "up", "-f", str(EXAMPLE), "--port", str(port)], stdout=log, stderr=subprocess.STDOUT, env=env
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (tmp_path / "up.log").read_text()
            assert time.monotonic() < deadline, "the stack did not come up in 30 s"
            try:
                services = httpx.get(url + "/health", timeout=2).json()["services"]
                if services == {"chat": "ready", "flaky": "ready"}:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        yield proc, url, tmp_path
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


def test_a_sim_stack_serves_chat_through_the_gateway(stack_up) -> None:  # type: ignore[no-untyped-def]
    proc, url, home = stack_up
    client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    assert {m.id for m in client.models.list().data} == {"sim-chat", "sim-flaky"}

    messages = [{"role": "user", "content": "Say hello through the gateway."}]
    answer = client.chat.completions.create(model="sim-chat", messages=messages, max_tokens=8)
    assert answer.usage and answer.usage.completion_tokens == 8
    assert answer.system_fingerprint and answer.system_fingerprint.startswith("sim:127.0.0.1:")
    chunks = list(
        client.chat.completions.create(
            model="sim-chat", messages=messages, max_tokens=5, stream=True, stream_options={"include_usage": True}
        )
    )
    assert len("".join(c.choices[0].delta.content or "" for c in chunks if c.choices).split()) == 5
    assert chunks[-1].usage and chunks[-1].usage.prompt_tokens_details
    assert chunks[-1].usage.prompt_tokens_details.cached_tokens > 0  # the same prompt, a turn later

    statuses = []
    for _ in range(30):
        try:
            client.chat.completions.create(model="sim-flaky", messages=messages)
            statuses.append(200)
        except openai.InternalServerError as error:
            assert isinstance(error.body, dict) and "simulated engine failure" in error.body["message"]
            statuses.append(500)
    assert statuses.count(200) >= 15 and statuses.count(500) >= 1  # error rate 0.2, seeded

    replicas = StateStore(Settings(home=home).state_dir).read_replicas()
    engine_ports = sorted(r.port for r in replicas if r.port is not None)
    assert len(engine_ports) == 2 and str(engine_ports).count(answer.system_fingerprint.rsplit(":", 1)[1]) == 1
    proc.send_signal(signal.SIGINT)
    assert proc.wait(20) == 0
    for port in engine_ports:
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            pass  # the engine is gone with the stack


def test_up_on_a_busy_gateway_port_is_refused_before_any_engine_starts(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        env = {**os.environ, "SERVESTACK_HOME": str(tmp_path)}
        result = subprocess.run(
            [SERVESTACK, "up", "-f", str(EXAMPLE), "--port", str(port)],
            capture_output=True, text=True, env=env, timeout=60,
        )  # fmt: skip
    assert result.returncode == 1
    assert f"the gateway port 127.0.0.1:{port} is already in use" in result.stderr
    assert not list((tmp_path / "logs").glob("*.log"))  # no engine was started, not even briefly
