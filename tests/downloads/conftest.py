"""Fixtures for the downloads tests: fake repositories on a fake hub, and `servestack pull` as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.downloads.fake_hub import FakeHub, FakeRepo

GOOD_TOKEN = "hf_GoodTokenWithAccess0123456789"
OTHER_TOKEN = "hf_OtherTokenWithoutAccess987654"
MIB = 1024 * 1024


def weights(n: int, seed: int = 1) -> bytes:
    """`n` bytes that differ between seeds (so blobs differ)."""
    block = bytes((seed * 31 + i) % 251 for i in range(4096))
    return (block * (n // len(block) + 1))[:n]


def tiny_repo() -> FakeRepo:
    """A transformers-style repository with safetensors and a duplicate .bin."""
    return FakeRepo(
        "org/tiny",
        {
            ".gitattributes": b"*.safetensors filter=lfs\n",
            "README.md": b"# tiny\n",
            "config.json": b'{"model_type": "llama", "num_hidden_layers": 2}',
            "generation_config.json": b'{"max_new_tokens": 16}',
            "tokenizer.json": b'{"version": "1.0"}',
            "tokenizer_config.json": b'{"chat_template": "{{ messages }}"}',
            "model.safetensors": weights(300_000, seed=1),
            "pytorch_model.bin": weights(300_000, seed=2),
        },
    )


def gguf_repo() -> FakeRepo:
    return FakeRepo(
        "org/tiny-GGUF",
        {
            "README.md": b"# quants\n",
            "tiny-Q4_K_M.gguf": weights(50_000, seed=3),
            "tiny-Q8_0.gguf": weights(90_000, seed=4),
            "tiny-F16.gguf": weights(160_000, seed=5),
        },
    )


def gated_repo() -> FakeRepo:
    return FakeRepo(
        "org/gated", {"config.json": b'{"model_type": "llama"}', "model.safetensors": weights(10_000, 6)}, gated=True
    )


def sharded_repo() -> FakeRepo:
    """Two shards, the second larger than huggingface_hub's 10 MiB read chunk (so a cut transfer resumes)."""
    return FakeRepo(
        "org/sharded",
        {
            "config.json": b'{"model_type": "llama"}',
            "model.safetensors.index.json": b'{"weight_map": {}}',
            "model-00001-of-00002.safetensors": weights(200_000, seed=7),
            "model-00002-of-00002.safetensors": weights(11 * MIB, seed=8),
        },
    )


@pytest.fixture
def fake_hub() -> Iterator[FakeHub]:
    repos = [tiny_repo(), gguf_repo(), gated_repo(), sharded_repo()]
    with FakeHub(repos, tokens={GOOD_TOKEN: {"org/gated"}, OTHER_TOKEN: set()}) as hub:
        yield hub


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str

    @property
    def output(self) -> str:
        return self.out + self.err


@dataclass
class Pull:
    """Runs `servestack pull` (or, with `run`, any command) in a clean environment: its own HF_HOME and
    servestack home, HF_ENDPOINT the fake."""

    workdir: Path
    hf_home: Path
    endpoint: str

    @property
    def cache(self) -> Path:
        return self.hf_home / "hub"

    def snapshot(self, repo: FakeRepo) -> Path:
        return self.cache / f"models--{repo.repo_id.replace('/', '--')}" / "snapshots" / repo.sha

    @property
    def home(self) -> Path:
        return self.workdir / "servestack-home"

    def __call__(self, *args: str, env: dict[str, str] | None = None) -> Run:
        return self.run("pull", *args, env=env)

    def run(self, *args: str, env: dict[str, str] | None = None, timeout: float = 120) -> Run:
        """`servestack ARGS` in this environment."""
        base = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING", "SERVESTACK_"))}
        base |= {
            "HF_ENDPOINT": self.endpoint,
            "HF_HOME": str(self.hf_home),
            "SERVESTACK_HOME": str(self.home),
            "COLUMNS": "200",
        }
        done = subprocess.run(
            [sys.executable, "-m", "servestack", *args],
            cwd=self.workdir,
            env=base | (env or {}),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return Run(done.returncode, done.stdout, done.stderr)


@pytest.fixture
def pull(fake_hub: FakeHub, tmp_path: Path) -> Pull:
    workdir = tmp_path / "work"
    workdir.mkdir()
    return Pull(workdir, tmp_path / "hf-home", fake_hub.url)
