"""End to end: `servestack up` with keys, aliases, usage and JSON logs on, in front of the real
default engine (SmolLM2 on llama-cpp-python), driven by the official `openai` and `ollama` clients.

The tests share one running stack (loading the engine takes seconds) and run in file order: the
last one stops it and checks what it left on disk.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import ollama
import openai
import pytest
from openai import OpenAI

from servestack.stack import load_default_stack
from tests.conftest import free_port

pytestmark = pytest.mark.e2e

READY_TIMEOUT = 120
ADMIN_KEY = "e2e-admin-key-9b1f0c44d2e3a7c5"


@dataclass
class Stack:
    url: str
    secret: str
    home: Path
    env: dict[str, str]
    proc: subprocess.Popen[str]

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "servestack", *args]
        return subprocess.run(command, capture_output=True, text=True, env=self.env, timeout=60)


def write_stack(path: Path, port: int) -> None:
    model = load_default_stack().services["smollm2"].model
    path.write_text(
        f"""version: 1
gateway:
  port: {port}
  auth: {{enabled: true}}
  aliases: {{gpt-4o-mini: smollm2}}
  usage: {{flush_interval: 0.1}}
  logs: {{format: json}}
services:
  smollm2:
    engine: llamacpp
    model: {model}
    served_names: [smollm2, SmolLM2-135M-Instruct]
    context_length: 2048
"""
    )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("prod")
    home, port = root / "home", free_port()
    env = {**os.environ, "SERVESTACK_HOME": str(home), "SERVESTACK_ADMIN_KEY": ADMIN_KEY, "COLUMNS": "200"}
    write_stack(root / "stack.yaml", port)
    created = subprocess.run(
        [sys.executable, "-m", "servestack", "keys", "create", "--name", "e2e", "--json"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    secret = json.loads(created.stdout)["secret"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "servestack", "up", "-f", str(root / "stack.yaml")],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    running = Stack(f"http://127.0.0.1:{port}", secret, home, env, proc)
    try:
        wait_until_ready(running)
        yield running
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
            running.cli("down")


def wait_until_ready(stack: Stack) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if stack.proc.poll() is not None:
            pytest.fail(f"servestack up exited early:\n{stack.proc.stdout.read() if stack.proc.stdout else ''}")
        status = json.loads(stack.cli("status", "--json").stdout)
        if status["running"] and status["services"] and all(s["status"] == "ready" for s in status["services"]):
            return
        time.sleep(0.3)
    pytest.fail("the stack was not ready in time")


def test_openai_client_with_a_key(stack: Stack) -> None:
    client = OpenAI(base_url=f"{stack.url}/v1", api_key=stack.secret, max_retries=0)
    chat = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "What is the capital of France?"}], max_tokens=16
    )
    assert chat.choices[0].message.content and chat.usage is not None and chat.usage.completion_tokens > 0
    chunks = list(
        client.chat.completions.create(
            model="smollm2", messages=[{"role": "user", "content": "Say hello."}], max_tokens=12, stream=True
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).strip()
    completion = client.completions.create(model="smollm2", prompt="The capital of France is", max_tokens=8)
    assert completion.choices[0].text.strip()
    assert {m.id for m in client.models.list()} == {"smollm2", "SmolLM2-135M-Instruct", "gpt-4o-mini"}

    with pytest.raises(openai.AuthenticationError):
        OpenAI(base_url=f"{stack.url}/v1", api_key="sk-ss-wrong", max_retries=0).models.list()
    no_key = httpx.get(f"{stack.url}/v1/models")
    assert no_key.status_code == 401 and no_key.json()["error"]["type"] == "authentication_error"


def test_ollama_client_chat_generate_streaming_list(stack: Stack) -> None:
    client = ollama.Client(host=stack.url, headers={"Authorization": f"Bearer {stack.secret}"})
    messages = [{"role": "user", "content": "Name a color."}]
    chat = client.chat(model="smollm2", messages=messages, options={"num_predict": 12})
    assert chat.message.content and chat.done and chat.eval_count and chat.prompt_eval_count
    parts = list(client.chat(model="smollm2:latest", messages=messages, stream=True, options={"num_predict": 12}))
    assert "".join(p.message.content or "" for p in parts).strip() and parts[-1].done and len(parts) > 2
    generated = client.generate(model="SmolLM2-135M-Instruct", prompt="Say hi.", options={"num_predict": 8})
    assert generated.response.strip() and generated.done
    pieces = list(client.generate(model="smollm2", prompt="Count to three.", stream=True, options={"num_predict": 12}))
    assert "".join(p.response or "" for p in pieces).strip() and pieces[-1].done
    names = {m.model for m in client.list().models}
    assert {"smollm2", "SmolLM2-135M-Instruct", "gpt-4o-mini"} <= names
    assert {m.model for m in client.ps().models} == names
    assert client.show("smollm2").details is not None


def test_revoked_key_and_admin_routes(stack: Stack) -> None:
    created = stack.cli("keys", "create", "--name", "temp", "--models", "smollm2", "--json")
    temp = json.loads(created.stdout)["secret"]
    with httpx.Client(base_url=stack.url, timeout=30) as http:
        body = {"model": "smollm2", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
        bearer = {"Authorization": f"Bearer {temp}"}
        assert _eventually(lambda: http.post("/v1/chat/completions", json=body, headers=bearer).status_code == 200)
        forbidden = http.post("/v1/chat/completions", json={**body, "model": "gpt-4o-mini"}, headers=bearer)
        assert forbidden.status_code == 200  # an alias of an allowed model is allowed
        assert stack.cli("keys", "revoke", "temp").returncode == 0
        assert _eventually(lambda: http.get("/v1/models", headers=bearer).status_code == 401)
        assert http.get("/admin/keys", headers={"x-api-key": stack.secret}).status_code == 403
        keys = http.get("/admin/keys", headers={"x-api-key": ADMIN_KEY}).json()["keys"]
        assert {k["name"]: k["status"] for k in keys} == {"e2e": "active", "temp": "revoked"}
        metrics = http.get("/metrics", headers={"x-api-key": stack.secret}).text
        assert 'servestack_requests_total{model="smollm2",status="200"}' in metrics
        assert http.get("/health").status_code == 200


def _eventually(check: object, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.2)
    return False


def test_usage_ledger_and_no_secret_left_anywhere(stack: Stack) -> None:
    stack.proc.send_signal(signal.SIGINT)
    output, _ = stack.proc.communicate(timeout=60)
    assert stack.proc.returncode == 0, output

    by_model = {t["group"]: t for t in json.loads(stack.cli("usage", "--by", "model", "--json").stdout)}
    assert by_model.keys() == {"smollm2", "SmolLM2-135M-Instruct"}
    assert sum(t["requests"] for t in by_model.values()) == 9  # every generation request made above
    smollm2 = by_model["smollm2"]
    assert smollm2["prompt_tokens"] > 0 and smollm2["completion_tokens"] > 0
    assert smollm2["estimated"] == 3  # llama-cpp-python streams carry no usage: counted, and flagged
    by_key = {t["group"]: t["requests"] for t in json.loads(stack.cli("usage", "--json").stdout)}
    assert by_key.keys() == {"e2e", "temp"}
    table = stack.cli("usage", "--since", "1h").stdout
    assert "e2e" in table and "ESTIMATED" in table

    log_lines = [json.loads(line) for line in (stack.home / "logs" / "gateway.jsonl").read_text().splitlines()]
    assert all(line.get("request_id") for line in log_lines if line.get("model"))
    temp = [k for k in json.loads(stack.cli("keys", "list", "--json").stdout) if k["name"] == "temp"]
    assert temp and temp[0]["status"] == "revoked"
    for secret in (stack.secret, ADMIN_KEY):
        assert secret not in output
        leaked = [p for p in stack.home.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
        assert leaked == []
