"""Offline bundles (seed 004's "prepare online, run offline"): `bundle create` where the fake hub is, `bundle
load` on a "machine" (its own HOME, HF cache and folder) whose hub is unreachable, then `up` serves from it."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from servestack.stack import load_default_stack, resolve_model
from tests.conftest import free_port
from tests.downloads.conftest import Run, gguf_repo, weights
from tests.downloads.fake_hub import FakeHub, FakeRepo

SMOL_FILE = "SmolLM2-135M-Instruct-Q4_1.gguf"
GLM = {"config.json": b'{"model_type": "glm4_moe"}', "model.safetensors": weights(30_000, 40)}


@dataclass
class Machine:
    """A machine of its own: a folder, a servestack home, an HF cache; `hub` is where HF_ENDPOINT points."""

    root: Path
    hub: str

    def run(self, *args: str, timeout: float = 180) -> Run:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING", "SERVESTACK_", "PIP_"))}
        env |= {
            "HF_ENDPOINT": self.hub,
            "HF_HOME": str(self.root / "hf-home"),
            "SERVESTACK_HOME": str(self.root / "home"),
            "COLUMNS": "200",
        }
        env |= {k.removeprefix("TEST_"): v for k, v in os.environ.items() if k.startswith("TEST_PIP_")}
        done = subprocess.run(
            [sys.executable, "-m", "servestack", *args],
            cwd=self.root,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return Run(done.returncode, done.stdout, done.stderr)


def smol_repo() -> FakeRepo:
    packaged = Path(resolve_model(load_default_stack().services["smollm2"].model))
    return FakeRepo("org/SmolLM2-GGUF", {"README.md": b"# SmolLM2\n", SMOL_FILE: packaged.read_bytes()})


@pytest.fixture
def online(tmp_path: Path) -> Iterator[Machine]:
    with FakeHub([gguf_repo(), smol_repo()]) as hub:
        root = tmp_path / "online"
        root.mkdir()
        yield Machine(root, hub.url)


@pytest.fixture
def offline(tmp_path: Path) -> Machine:
    root = tmp_path / "offline"
    root.mkdir()
    return Machine(root, "http://127.0.0.1:9")  # nothing listens there: no hub


def write_stack(machine: Machine, services: str) -> Path:
    path = machine.root / "stack.yaml"
    path.write_text(f"version: 1\ngateway:\n  port: {free_port()}\nservices:\n{services}")
    return path


@pytest.mark.e2e
def test_a_bundle_made_online_runs_the_stack_offline(online: Machine, offline: Machine) -> None:
    write_stack(
        online,
        "  chat:\n    engine: llamacpp\n    model: org/SmolLM2-GGUF:Q4_1\n    context_length: 2048\n"
        "  sim:\n    engine: sim\n    model: sim-model\n",
    )
    assert online.run("pull").code == 0
    made = online.run("bundle", "create", "stack.yaml", "-o", "stack.bundle")
    assert made.code == 0, made.output
    assert "1 model(s), 0 venv(s), 1 files" in made.out and "sim: its engine (sim) loads no weights" in made.out

    loaded = offline.run("bundle", "load", str(online.root / "stack.bundle"))
    assert loaded.code == 0, loaded.output
    assert "org/SmolLM2-GGUF:Q4_1 (1 files)" in loaded.out
    assert (offline.root / "stack.yaml").read_text() == (online.root / "stack.yaml").read_text()
    verified = offline.run("models", "--verify")
    assert verified.code == 0 and "✓ org/SmolLM2-GGUF:Q4_1: 1 of 1 file(s) match" in verified.out

    up = offline.run("up", "-d")
    try:
        assert up.code == 0, up.output
        port = int((offline.root / "stack.yaml").read_text().split("port: ")[1].split()[0])
        reply = httpx.post(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            json={"model": "chat", "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 4},
            timeout=60,
        )
    finally:
        offline.run("down")
    assert reply.status_code == 200, reply.text
    assert reply.json()["choices"][0]["message"]["content"]


def test_a_damaged_bundle_is_named_and_nothing_damaged_is_loaded(online: Machine, offline: Machine) -> None:
    write_stack(online, "  q8:\n    engine: llamacpp\n    model: org/tiny-GGUF:Q8_0\n")
    assert online.run("pull").code == 0
    assert online.run("bundle", "create", "stack.yaml", "-o", "b.tar").code == 0
    bundle = online.root / "b.tar"
    data = bytearray(bundle.read_bytes())
    data[data.index(gguf_repo().files["tiny-Q8_0.gguf"][:4096]) + 5000] ^= 0xFF
    bundle.write_bytes(bytes(data))

    loaded = offline.run("bundle", "load", str(bundle))

    assert loaded.code == 1
    assert f"error: tiny-Q8_0.gguf in {bundle} is damaged: its SHA-256 is" in loaded.err
    blobs = offline.root / "hf-home" / "hub" / "models--org--tiny-GGUF" / "blobs"
    assert not blobs.exists() or not list(blobs.iterdir())


def test_a_model_that_is_not_pulled_cannot_be_bundled(online: Machine) -> None:
    write_stack(online, "  q8:\n    engine: llamacpp\n    model: org/tiny-GGUF:Q8_0\n")

    made = online.run("bundle", "create", "stack.yaml", "-o", "b.tar")

    assert made.code == 1
    assert "org/tiny-GGUF:Q8_0 (org/tiny-GGUF:Q8_0) is not in the HF cache" in made.err
    assert "fix: servestack pull org/tiny-GGUF:Q8_0" in made.err and not (online.root / "b.tar").exists()


@pytest.mark.e2e
def test_a_stack_with_nothing_to_pack_is_refused_with_why(online: Machine) -> None:
    write_stack(online, "  sim:\n    engine: sim\n    model: sim\n")

    made = online.run("bundle", "create", "stack.yaml", "-o", "b.tar")

    assert made.code == 1
    assert "nothing in stack.yaml to bundle: sim: its engine (sim) loads no weights" in made.err
    assert "fix: copy the stack file alone" in made.err and not (online.root / "b.tar").exists()


def test_local_files_and_modelscope_folders_go_where_the_stack_finds_them(online: Machine, offline: Machine) -> None:
    (online.root / "weights").mkdir()
    (online.root / "weights" / "mine-Q5_K_M.gguf").write_bytes(weights(5_000, 41))
    glm = online.root / "home" / "models" / "modelscope" / "ZhipuAI" / "GLM-4.7"
    glm.mkdir(parents=True)
    for name, data in GLM.items():
        (glm / name).write_bytes(data)
    write_stack(
        online,
        "  mine:\n    engine: llamacpp\n    model: ./weights/mine-Q5_K_M.gguf\n"
        "  glm:\n    engine: vllm\n    model: modelscope:ZhipuAI/GLM-4.7\n",
    )
    assert online.run("bundle", "create", "stack.yaml", "-o", "b.tar").code == 0
    with tarfile.open(online.root / "b.tar") as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
    assert [m["placement"] for m in manifest["models"]] == ["stack-dir", "models-dir"]

    loaded = offline.run("bundle", "load", str(online.root / "b.tar"), "--dir", "site")

    assert loaded.code == 0, loaded.output
    site = offline.root / "site"
    assert (site / "weights" / "mine-Q5_K_M.gguf").read_bytes() == weights(5_000, 41)
    loaded_glm = offline.root / "home" / "models" / "modelscope" / "ZhipuAI" / "GLM-4.7"
    assert {p.name: p.read_bytes() for p in loaded_glm.iterdir()} == GLM
    again = offline.run("bundle", "load", str(online.root / "b.tar"), "--dir", "site")
    assert again.code == 0, again.output  # the same stack file is not a conflict
    (site / "stack.yaml").write_text("services: {}\n")
    clash = offline.run("bundle", "load", str(online.root / "b.tar"), "--dir", "site")
    assert clash.code == 1 and "exists and differs from the bundle's stack file" in clash.err


def make_wheel(folder: Path) -> Path:
    """A pure-Python wheel of `tinypkg` 1.0, written by hand (no build tools, no index)."""
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / "tinypkg-1.0-py3-none-any.whl"
    files = {
        "tinypkg/__init__.py": b"ANSWER = 42\n",
        "tinypkg-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: tinypkg\nVersion: 1.0\n",
        "tinypkg-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = (
        "".join(f"{name},sha256={_urlsafe_sha256(data)},{len(data)}\n" for name, data in files.items())
        + "tinypkg-1.0.dist-info/RECORD,,\n"
    )
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
        archive.writestr("tinypkg-1.0.dist-info/RECORD", record)
    return wheel


def _urlsafe_sha256(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def test_wheels_rebuild_a_venv_runtime_offline(
    online: Machine, offline: Machine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wheelhouse = tmp_path / "wheelhouse"
    make_wheel(wheelhouse)
    venv = online.root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--no-index", "--find-links", str(wheelhouse)]
    subprocess.run([*pip, "tinypkg"], check=True, capture_output=True, timeout=300)
    write_stack(online, "  sim:\n    engine: sim\n    model: sim-model\n    runtime: {venv: ./venv}\n")
    # The online side's pip index is this folder (PIP_* reach `pip download` from the environment).
    monkeypatch.setenv("TEST_PIP_NO_INDEX", "1")
    monkeypatch.setenv("TEST_PIP_FIND_LINKS", str(wheelhouse))

    made = online.run("bundle", "create", "stack.yaml", "-o", "b.tar", "--wheels", timeout=600)
    monkeypatch.delenv("TEST_PIP_FIND_LINKS")
    loaded = offline.run("bundle", "load", str(online.root / "b.tar"), timeout=600)

    assert made.code == 0, made.output
    assert "0 model(s), 1 venv(s), 1 files" in made.out
    assert loaded.code == 0, loaded.output
    assert f"venv {offline.root / 'venv'}: built from 1 wheels" in loaded.out
    answer = subprocess.run(
        [str(offline.root / "venv" / "bin" / "python"), "-c", "import tinypkg; print(tinypkg.ANSWER)"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert answer.stdout.strip() == "42"
