"""End to end: `servestack up` with the default stack serves SmolLM2 through the gateway.

Real processes and sockets: the CLI in a subprocess, llama-cpp-python as the engine, the official
`openai` client as the caller.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from openai import OpenAI

from servestack.supervisor import group_alive
from tests.conftest import run_cli

pytestmark = pytest.mark.e2e

READY_TIMEOUT = 120
README = Path(__file__).parents[2] / "README.md"


def readme_block(language: str, containing: str) -> str:
    """The README's first ```LANGUAGE code block that contains `containing`."""
    for block in README.read_text().split("```" + language + "\n")[1:]:
        code = block.split("```")[0]
        if containing in code:
            return code
    raise AssertionError(f"README has no {language} block with {containing!r}")


def status_json() -> dict:
    result = run_cli("status", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def wait_until_ready(proc: subprocess.Popen[str]) -> dict:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"servestack up exited early:\n{proc.stdout.read() if proc.stdout else ''}")
        status = status_json()
        if status["running"] and status["services"] and all(s["status"] == "ready" for s in status["services"]):
            return status
        time.sleep(0.3)
    pytest.fail("the default stack was not ready in time")


@pytest.fixture
def up(home: Path, port: int, tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """`servestack up --port PORT` on the default stack, from a folder without a stack.yaml."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "servestack", "up", "--port", str(port)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
            run_cli("down")


def assert_concurrent_streams_all_finish(client: OpenAI) -> None:
    """Streams sent together all run to their end: llama-cpp-python's default would cut the
    first one off as soon as the next request (or a health probe) waits for the model."""

    def stream(prompt: str) -> str | None:
        chunks = client.chat.completions.create(
            model="smollm2", messages=[{"role": "user", "content": prompt}], max_tokens=32, stream=True
        )
        return [c.choices[0].finish_reason for c in chunks if c.choices][-1]

    prompts = ["Tell a story about a cat.", "Tell a story about a dog.", "Describe the sea."]
    with ThreadPoolExecutor(len(prompts)) as pool:
        assert all(reason in ("stop", "length") for reason in pool.map(stream, prompts))


def test_default_stack_answers_openai_clients_and_stops_cleanly(up: subprocess.Popen[str], port: int) -> None:
    status = wait_until_ready(up)
    [service] = status["services"]
    assert service["service"] == "smollm2" and service["engine"] == "llamacpp"
    client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)

    chat = client.chat.completions.create(
        model="smollm2", messages=[{"role": "user", "content": "What is the capital of France?"}], max_tokens=24
    )
    assert chat.choices[0].message.content and chat.choices[0].message.content.strip()
    assert chat.usage is not None and chat.usage.completion_tokens > 0 and chat.usage.prompt_tokens > 0

    pieces = [
        chunk.choices[0].delta.content or ""
        for chunk in client.chat.completions.create(
            model="SmolLM2-135M-Instruct",
            messages=[{"role": "user", "content": "Say hello."}],
            max_tokens=16,
            temperature=0,  # deterministic: a sampled answer can be empty
            stream=True,
        )
        if chunk.choices
    ]
    assert "".join(pieces).strip()
    assert len(pieces) > 2  # really streamed, not one blob
    assert_concurrent_streams_all_finish(client)

    completion = client.completions.create(model="smollm2", prompt="The capital of France is", max_tokens=12)
    assert completion.choices[0].text.strip()
    assert completion.usage is not None and completion.usage.completion_tokens > 0

    assert {m.id for m in client.models.list()} == {"smollm2", "SmolLM2-135M-Instruct"}

    curl = readme_block("bash", "curl").replace("8000", str(port))
    answer = json.loads(subprocess.run(["bash", "-c", curl], capture_output=True, text=True, check=True).stdout)
    assert answer["choices"][0]["message"]["content"].strip()
    example = readme_block("python", "OpenAI(").replace("8000", str(port))
    printed = subprocess.run([sys.executable, "-c", example], capture_output=True, text=True, check=True).stdout
    assert len(printed.strip().splitlines()) >= 2

    table = run_cli("status")
    assert "smollm2" in table.stdout and "ready" in table.stdout

    up.send_signal(signal.SIGINT)
    assert up.wait(timeout=30) == 0
    assert not group_alive(service["pgid"])
    assert status_json()["running"] is False


def test_down_from_another_shell_stops_up_and_a_second_up_is_refused(up: subprocess.Popen[str], port: int) -> None:
    service = wait_until_ready(up)["services"][0]

    second = run_cli("up", "--port", str(port + 1 if port < 65535 else port - 1))
    assert second.returncode == 1
    assert "already running" in second.stderr and "Traceback" not in second.stderr

    down = run_cli("down")
    assert down.returncode == 0 and "stopped servestack" in down.stdout
    assert up.wait(timeout=30) == 0
    assert not group_alive(service["pgid"])
    assert "nothing is running" in run_cli("down").stdout
