"""`servestack up` with `runtime: {kind: docker|podman}`: the default model served from a real container.

Each test runs once per container engine (a private dockerd, a private podman storage; see
conftest.py): the official `openai` client through the gateway, then stop, restart, `kill -9` of the
engine inside the container, of the `run` client and of the controller, and `down` — after which no
container is left, running or not (`ps -a`).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from openai import OpenAI

from servestack.supervisor import group_alive, pid_alive
from tests.conftest import run_cli
from tests.containers.conftest import IMAGE, ROOT, ContainerCli

pytestmark = [pytest.mark.containers, pytest.mark.timeout(600)]

TOKEN = "hf_container_test_secret"
NAME = re.compile(r"servestack-[0-9a-f]{8}-smollm2-0")
GONE_SECONDS = 30  # a stopped container is removed by its daemon moments later


def write_stack(path: Path, cli: ContainerCli) -> Path:
    """The README's container example, with this test's engine, image and the host's options."""
    readme = (ROOT / "README.md").read_text()
    [example] = [b.split("```")[0] for b in readme.split("```yaml\n")[1:] if "servestack-llamacpp:local" in b]
    stack = yaml.safe_load(example)
    stack["services"]["smollm2"]["runtime"] |= {"kind": cli.cli, "image": IMAGE, "options": cli.options}
    path.write_text(yaml.safe_dump(stack))
    return path


def status() -> dict:
    done = run_cli("status", "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def replica(current: dict | None = None) -> dict:
    [only] = (current or status())["services"]
    return only


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.3)
    pytest.fail(f"not within {timeout}s: {what}")


def ready_after_restarts(count: int) -> Callable[[], bool]:
    def check() -> bool:
        r = replica()
        return bool(r["restarts"] == count and r["status"] == "ready")

    return check


def the_container(cli: ContainerCli) -> str:
    """The one container there is (its id), named for the state dir, service and replica."""
    containers = cli.containers()
    assert len(containers) == 1 and NAME.fullmatch(next(iter(containers))), containers
    return next(iter(containers.values()))


def chat(gateway: str) -> str:
    client = OpenAI(base_url=f"{gateway}/v1", api_key="unused", max_retries=0, timeout=60)
    reply = client.chat.completions.create(
        model="smollm2", messages=[{"role": "user", "content": "What is the capital of France?"}], max_tokens=8
    )
    return reply.choices[0].message.content or ""


def stream(gateway: str) -> str:
    client = OpenAI(base_url=f"{gateway}/v1", api_key="unused", max_retries=0, timeout=60)
    chunks = client.chat.completions.create(
        model="smollm2", messages=[{"role": "user", "content": "Count to five."}], max_tokens=8, stream=True
    )
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def engine_pid(cli: ContainerCli, name: str) -> int:
    """The engine inside the container, as this host sees it: the child of the container's init."""
    init = cli.inspect(name)["State"]["Pid"]
    children = Path(f"/proc/{init}/task/{init}/children").read_text().split()
    assert len(children) == 1, children
    return int(children[0])


@pytest.fixture
def up(engine_cli: ContainerCli, tmp_path: Path, port: int, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """`servestack up -d` of the default model in a container; the gateway's URL."""
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    stack = write_stack(tmp_path / "stack.yaml", engine_cli)
    started = run_cli("up", "-d", "-f", str(stack), "--port", str(port), timeout=180)
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        run_cli("down")


def test_up_serves_from_a_container_and_down_leaves_none(up: str, engine_cli: ContainerCli) -> None:
    assert chat(up)
    assert stream(up)
    name = next(iter(engine_cli.containers()))
    the_container(engine_cli)
    inspected = engine_cli.inspect(name)
    assert inspected["HostConfig"]["NetworkMode"] == "host"
    assert f"HF_TOKEN={TOKEN}" in inspected["Config"]["Env"]  # passed by name ...
    shown = json.dumps([inspected["Path"], inspected["Args"], inspected["Config"]["Cmd"]])
    client = replica()["pid"]
    command_line = Path(f"/proc/{client}/cmdline").read_bytes().decode()
    assert TOKEN not in shown and TOKEN not in command_line and TOKEN not in replica()["command"]  # ... never shown
    assert "-e\0HF_TOKEN\0" in command_line

    logs = run_cli("logs", "smollm2", "-n", "400")
    assert f"Uvicorn running on http://127.0.0.1:{replica()['port']}" in logs.stdout  # the container's own output

    down = run_cli("down")
    assert down.returncode == 0 and "leftover" not in down.stdout
    assert engine_cli.containers() == {}  # `down` waits for the container to go


def test_stop_start_and_restart_replace_the_container(up: str, engine_cli: ContainerCli) -> None:
    first = the_container(engine_cli)
    assert run_cli("stop", "smollm2").returncode == 0
    assert engine_cli.containers() == {}
    assert run_cli("start", "smollm2").returncode == 0
    second = the_container(engine_cli)
    assert run_cli("restart", "smollm2").returncode == 0
    third = the_container(engine_cli)
    assert len({first, second, third}) == 3
    assert chat(up)


def test_engine_killed_inside_the_container_comes_back_in_a_new_one(up: str, engine_cli: ContainerCli) -> None:
    before = the_container(engine_cli)
    os.kill(engine_pid(engine_cli, next(iter(engine_cli.containers()))), signal.SIGKILL)
    wait_for(ready_after_restarts(1), "the engine restarted and ready")
    assert "exited with code 137" in replica()["last_error"]  # the init passes on how the engine ended
    assert the_container(engine_cli) != before
    assert chat(up)


def test_killed_run_client_leaves_no_container_behind(up: str, engine_cli: ContainerCli) -> None:
    before = the_container(engine_cli)
    os.kill(replica()["pid"], signal.SIGKILL)  # the container outlives its client ...
    wait_for(ready_after_restarts(1), "the engine restarted and ready")
    assert the_container(engine_cli) != before  # ... until the supervisor removes it by name
    assert chat(up)


def start_foreground(stack: Path, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "servestack", "up", "-f", str(stack), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for(lambda: status()["running"] and replica()["status"] == "ready", "the engine ready")
    return proc


def watchdog_pid(home: Path) -> int:
    """The watchdog of the instance under `home` (found by its command line and state dir)."""
    state_dir = str((home / "state").resolve())
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().decode().split("\0")
        except (OSError, ValueError):
            continue
        if "servestack.supervisor.watchdog" in argv and any(a.endswith(f":{state_dir}") for a in argv):
            return int(entry.name)
    raise AssertionError("no watchdog found")


def test_sigkilled_controller_takes_its_container_along(
    engine_cli: ContainerCli, home: Path, tmp_path: Path, port: int
) -> None:
    proc = start_foreground(write_stack(tmp_path / "stack.yaml", engine_cli), port)
    the_container(engine_cli)
    client = replica()["pgid"]
    proc.kill()
    proc.wait(timeout=10)
    wait_for(lambda: engine_cli.containers() == {}, "no container left (the watchdog stopped it)", GONE_SECONDS)
    wait_for(lambda: not group_alive(client), "the client gone", GONE_SECONDS)
    down = run_cli("down")
    assert down.returncode == 0 and "leftover" not in down.stdout


@pytest.mark.parametrize("then", ["down", "up"])
def test_a_container_whose_controller_watchdog_and_client_died_is_removed(
    engine_cli: ContainerCli, home: Path, tmp_path: Path, port: int, then: str
) -> None:
    """Nothing of servestack is left on the host, only the container: `down`, or the next `up`, removes it."""
    stack = write_stack(tmp_path / "stack.yaml", engine_cli)
    proc = start_foreground(stack, port)
    before = the_container(engine_cli)
    client = replica()["pid"]
    for pid in (watchdog_pid(home), proc.pid, client):
        os.kill(pid, signal.SIGKILL)
    proc.wait(timeout=10)
    wait_for(lambda: not pid_alive(client), "the client gone")
    time.sleep(1)
    assert engine_cli.containers() == {next(iter(engine_cli.containers())): before}  # still running, orphaned

    if then == "down":
        done = run_cli("down")
        assert done.returncode == 0 and "stopped a leftover engine" in done.stdout, done.stdout
        wait_for(lambda: engine_cli.containers() == {}, "no container left after down", GONE_SECONDS)
    else:
        done = run_cli("up", "-d", "-f", str(stack), "--port", str(port), timeout=180)
        assert done.returncode == 0, done.stdout + done.stderr
        assert the_container(engine_cli) != before  # the leftover replaced, not a name conflict
        assert chat(f"http://127.0.0.1:{port}")
        assert run_cli("down").returncode == 0
        assert engine_cli.containers() == {}
