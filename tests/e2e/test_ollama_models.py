"""Ollama's model management through the official `ollama` client against `servestack up`: pull (streamed
progress, checksums, a corrupted download), show with details and the service's defaults, copy (an alias
kept across a restart), delete, create/push refused; the admin key when keys are on. Models come from the
fake hub on 127.0.0.1; SmolLM2 runs on llama.cpp and a simulator beside it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import ollama
import pytest

from servestack.stack import load_default_stack
from tests.conftest import free_port
from tests.downloads.conftest import gguf_repo, tiny_repo
from tests.downloads.fake_hub import FakeHub

pytestmark = pytest.mark.e2e

ADMIN = "admin-secret-for-the-model-routes"
READY_TIMEOUT = 120
STACK = """version: 1
gateway:
  port: {port}
  auth: {{enabled: {auth}}}
services:
{services}"""
SMOLLM2 = """  smollm2:
    engine: llamacpp
    model: {model}
    context_length: 2048
    defaults: {{temperature: 0.2, top_p: 0.9, max_tokens: 8, stop: ["END"]}}
"""
SIM = """  sim:
    engine: sim
    model: sim-model
    args: [--decode-rate, "500", --prefill-rate, "100000"]
"""


@dataclass
class Instance:
    url: str
    home: Path
    hf_home: Path
    hub: FakeHub
    env: dict[str, str]
    stack: Path
    proc: subprocess.Popen[str] | None = None

    def client(self, secret: str | None = None) -> ollama.Client:
        headers = {"Authorization": f"Bearer {secret}"} if secret else None
        return ollama.Client(host=self.url, headers=headers)

    def snapshot(self, repo_id: str, sha: str) -> Path:
        return self.hf_home / "hub" / f"models--{repo_id.replace('/', '--')}" / "snapshots" / sha

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "servestack", *args], env=self.env, capture_output=True, text=True, timeout=60
        )

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "servestack", "up", "-f", str(self.stack)],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"servestack up exited early:\n{self.proc.stdout.read() if self.proc.stdout else ''}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).json().get("status") == "ok":
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        pytest.fail("the stack was not ready in time")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def instance(root: Path, hub: FakeHub, *, services: str, auth: bool) -> Instance:
    port = free_port()
    stack = root / "stack.yaml"
    stack.write_text(STACK.format(port=port, auth=str(auth).lower(), services=services))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING", "SERVESTACK_"))}
    env |= {
        "HF_ENDPOINT": hub.url,
        "HF_HOME": str(root / "hf-home"),
        "SERVESTACK_HOME": str(root / "home"),
        "SERVESTACK_ADMIN_KEY": ADMIN,
        "COLUMNS": "200",
    }
    return Instance(f"http://127.0.0.1:{port}", root / "home", root / "hf-home", hub, env, stack)


@pytest.fixture(scope="module")
def hub() -> Iterator[FakeHub]:
    with FakeHub([gguf_repo(), tiny_repo()]) as fake:
        yield fake


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, hub: FakeHub) -> Iterator[Instance]:
    """SmolLM2 (with defaults) and a simulator, keys off."""
    model = load_default_stack().services["smollm2"].model
    running = instance(
        tmp_path_factory.mktemp("ollama-models"), hub, services=SMOLLM2.format(model=model) + SIM, auth=False
    )
    running.start()
    try:
        yield running
    finally:
        running.stop()


def test_pull_streams_ollamas_progress_and_checks_the_files(served: Instance) -> None:
    repo = gguf_repo()
    parts = list(served.client().pull("org/tiny-GGUF:Q8_0", stream=True))

    statuses = [p.status for p in parts]
    assert statuses[0] == "pulling manifest" and statuses[-1] == "success"
    assert "verifying sha256 digest" in statuses
    progress = [p for p in parts if p.status == "pulling tiny-Q8_0.gguf"]
    size = len(repo.files["tiny-Q8_0.gguf"])
    assert progress and {p.total for p in progress} == {size} and progress[-1].completed == size
    assert [p.completed for p in progress] == sorted(p.completed or 0 for p in progress)
    assert progress[0].digest and progress[0].digest.startswith("sha256:")
    assert (served.snapshot(repo.repo_id, repo.sha) / "tiny-Q8_0.gguf").read_bytes() == repo.files["tiny-Q8_0.gguf"]

    whole = served.client().pull("org/tiny")  # not streamed: one answer when it is done
    assert whole.status == "success"
    assert served.client().pull("smollm2").status == "success"  # a served name: its weights are here already


def test_a_corrupted_or_unknown_pull_is_an_error(served: Instance) -> None:
    served.hub.corrupt_once.add("org/tiny-GGUF/tiny-F16.gguf")
    with pytest.raises(ollama.ResponseError) as corrupt:
        list(served.client().pull("org/tiny-GGUF:F16", stream=True))
    assert "tiny-F16.gguf of org/tiny-GGUF:F16 is corrupt" in corrupt.value.error
    with pytest.raises(ollama.ResponseError) as unknown:
        served.client().pull("org/no-such-model")
    assert unknown.value.status_code == 502 and "was not found" in unknown.value.error
    with pytest.raises(ollama.ResponseError) as bad:
        served.client().pull("qwen2.5-coder:33b")
    assert bad.value.status_code == 400 and "no size '33b'" in bad.value.error


def test_show_has_the_models_details_and_its_defaults(served: Instance) -> None:
    shown = served.client().show("smollm2")

    assert shown.details is not None
    assert (shown.details.format, shown.details.family) == ("gguf", "llama")
    assert (shown.details.parameter_size, shown.details.quantization_level) == ("135M", "Q4_1")
    assert shown.modelinfo is not None and shown.modelinfo["general.parameter_count"] > 100_000_000
    assert shown.parameters is not None
    lines = [line.split() for line in shown.parameters.splitlines()]
    assert lines == [["temperature", "0.2"], ["top_p", "0.9"], ["num_predict", "8"], ["stop", '"END"']]
    assert "FROM /" in (shown.modelfile or "") and "PARAMETER num_predict 8" in (shown.modelfile or "")
    listed = {m["id"]: m for m in httpx.get(f"{served.url}/v1/models", timeout=10).json()["data"]}
    assert listed["smollm2"]["defaults"] == {"temperature": 0.2, "top_p": 0.9, "max_tokens": 8, "stop": ["END"]}
    assert "defaults" not in listed["sim"]


def test_defaults_apply_to_requests_that_omit_them(served: Instance) -> None:
    ask = [{"role": "user", "content": "Count from 1 to 100, one number per line."}]
    defaulted = served.client().chat(model="smollm2", messages=ask)
    own = served.client().chat(model="smollm2", messages=ask, options={"num_predict": 24})

    assert defaulted.eval_count == 8 and defaulted.done_reason == "length"
    assert own.eval_count is not None and own.eval_count > 8


def test_copy_adds_an_alias_and_delete_removes_it(served: Instance) -> None:
    client = served.client()
    client.copy("smollm2", "my-model")

    assert "my-model" in {m.model for m in client.list().models}
    assert client.chat(model="my-model", messages=[{"role": "user", "content": "Hi"}]).done
    assert json.loads((served.home / "state" / "aliases.json").read_text()) == {"my-model": "smollm2"}
    with pytest.raises(ollama.ResponseError) as taken:
        client.copy("sim", "smollm2")
    assert taken.value.status_code == 400 and "already a name" in taken.value.error

    client.delete("my-model:latest")
    assert "my-model" not in {m.model for m in client.list().models}
    with pytest.raises(ollama.ResponseError) as gone:
        client.chat(model="my-model", messages=[{"role": "user", "content": "Hi"}])
    assert gone.value.status_code == 404


def test_delete_removes_a_pulled_model_and_refuses_a_served_one(served: Instance) -> None:
    repo = gguf_repo()
    served.client().pull("org/tiny-GGUF:Q4_K_M")
    file = served.snapshot(repo.repo_id, repo.sha) / "tiny-Q4_K_M.gguf"
    assert file.is_file()

    served.client().delete("org/tiny-GGUF:Q4_K_M")

    assert not file.exists()
    with pytest.raises(ollama.ResponseError) as missing:
        served.client().delete("org/tiny-GGUF:Q4_K_M")
    assert missing.value.status_code == 404
    with pytest.raises(ollama.ResponseError) as in_use:
        served.client().delete("smollm2")
    assert in_use.value.status_code == 409 and "served name" in in_use.value.error


def test_create_and_push_are_refused_with_what_to_do(served: Instance) -> None:
    with pytest.raises(ollama.ResponseError) as create:
        served.client().create(model="mine", from_="smollm2", system="Be brief.")
    assert create.value.status_code == 501 and "add a service there" in create.value.error
    with pytest.raises(ollama.ResponseError) as push:
        served.client().push("smollm2")
    assert push.value.status_code == 501 and "does not publish models" in push.value.error


def test_with_keys_on_only_the_admin_key_manages_models_and_aliases_survive_a_restart(
    tmp_path: Path, hub: FakeHub
) -> None:
    running = instance(tmp_path, hub, services=SIM, auth=True)
    running.start()
    try:
        made = running.cli("keys", "create", "--name", "app")
        assert made.returncode == 0, made.stderr
        secret = next(line for line in made.stdout.splitlines() if line.startswith("sk-"))
        time.sleep(1.5)  # the gateway reloads keys within a second
        with pytest.raises(ollama.ResponseError) as client_key:
            running.client(secret).pull("org/tiny-GGUF:Q8_0")
        with pytest.raises(ollama.ResponseError) as no_key:
            running.client().copy("sim", "fast")
        running.client(ADMIN).copy("sim", "fast")
        assert running.client(ADMIN).pull("org/tiny-GGUF:Q8_0").status == "success"
    finally:
        running.stop()
    running.start()  # a new instance on the same state dir
    try:
        listed = {m.model for m in running.client(secret).list().models}
        reply = running.client(secret).generate(model="fast", prompt="hi", options={"num_predict": 2})
    finally:
        running.stop()

    assert client_key.value.status_code == 403 and "admin key" in client_key.value.error
    assert no_key.value.status_code == 401
    assert "fast" in listed and reply.done
