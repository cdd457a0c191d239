"""Short model names from servestack's library (`qwen2.5-coder:32b-q5_k_m`), in `pull` and in a stack's
`model:`, against the fake hub serving (small stand-ins for) the repositories the library names."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from servestack.downloads import parse_reference
from servestack.downloads.library import Library
from servestack.errors import DownloadError
from tests.downloads.conftest import Pull, weights
from tests.downloads.fake_hub import FakeHub, FakeRepo

GGUF_REPO = "Qwen/Qwen2.5-Coder-32B-Instruct-GGUF"
WEIGHTS_REPO = "Qwen/Qwen2.5-Coder-32B-Instruct"
Q5 = "qwen2.5-coder-32b-instruct-q5_k_m.gguf"
Q4 = "qwen2.5-coder-32b-instruct-q4_k_m.gguf"


@pytest.fixture
def library_hub() -> Iterator[FakeHub]:
    repos = [
        FakeRepo(GGUF_REPO, {"README.md": b"# GGUF\n", Q4: weights(40_000, 21), Q5: weights(50_000, 22)}),
        FakeRepo(WEIGHTS_REPO, {"config.json": b'{"model_type": "qwen2"}', "model.safetensors": weights(60_000, 23)}),
    ]
    with FakeHub(repos) as hub:
        yield hub


@pytest.fixture
def pull_library(library_hub: FakeHub, tmp_path: Path) -> Pull:
    workdir = tmp_path / "work"
    workdir.mkdir()
    return Pull(workdir, tmp_path / "hf-home", library_hub.url)


def snapshot(pull: Pull, repo_id: str) -> Path:
    return pull.snapshot(FakeRepo(repo_id, {}))


@pytest.mark.parametrize(
    ("name", "formats", "repo", "quant"),
    [
        ("qwen2.5-coder:32b-q5_k_m", ("safetensors",), GGUF_REPO, "Q5_K_M"),  # a quant means GGUF
        ("qwen2.5-coder:32b-instruct-q5_K_M", ("gguf",), GGUF_REPO, "Q5_K_M"),  # Ollama's tag spelling
        ("qwen2.5-coder:32b", ("gguf",), GGUF_REPO, None),
        ("qwen2.5-coder:32b", ("safetensors", "gguf"), WEIGHTS_REPO, None),
        ("llama3.1:70b-fp16", ("gguf",), "bartowski/Meta-Llama-3.1-70B-Instruct-GGUF", "F16"),
        ("qwen2.5-coder", ("safetensors",), "Qwen/Qwen2.5-Coder-7B-Instruct", None),  # the default size
        ("qwen3:latest", ("gguf",), "Qwen/Qwen3-8B-GGUF", None),
    ],
)
def test_short_names_resolve_by_the_library(name: str, formats: tuple[str, ...], repo: str, quant: str | None) -> None:
    reference = parse_reference(name, formats)
    assert (reference.repo_id, reference.quant, reference.short_name) == (repo, quant, name)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("qwen2.5-coder:33b", "no size '33b' of qwen2.5-coder"),
        ("qwen2.5-coder:32b-awq", "'awq' is not a GGUF quantisation"),
        ("smollm2:135m-q4_k_m", "smollm2:135m has no gguf weights in servestack's library"),
    ],
)
def test_short_names_that_do_not_resolve_say_why(name: str, message: str) -> None:
    with pytest.raises(DownloadError, match=message):
        parse_reference(name)


def test_every_library_entry_names_repositories() -> None:
    library = Library.builtin()
    for family, entry in library.families.items():
        assert entry["default"] in entry["sizes"], family
        for size, repos in entry["sizes"].items():
            assert repos and set(repos) <= {"gguf", "safetensors"}, (family, size)
            assert all(repo.count("/") == 1 for repo in repos.values()), (family, size)


def test_pull_a_short_name_fetches_that_quant(pull_library: Pull) -> None:
    run = pull_library("qwen2.5-coder:32b-q5_k_m")

    assert run.code == 0, run.output
    assert f"qwen2.5-coder:32b-q5_k_m ({GGUF_REPO}:Q5_K_M) from Hugging Face" in run.out
    assert sorted(p.name for p in snapshot(pull_library, GGUF_REPO).iterdir()) == [Q5]


def test_a_stack_names_models_by_short_name_in_each_engines_format(pull_library: Pull) -> None:
    (pull_library.workdir / "stack.yaml").write_text(
        "services:\n"
        "  coder:\n    engine: llamacpp\n    model: qwen2.5-coder:32b-q5_k_m\n"
        "  big:\n    engine: vllm\n    model: qwen2.5-coder:32b\n    gpus: [0]\n"
    )
    before = pull_library.run("plan", "--gpus", "1xH100")

    pulled = pull_library()
    planned = pull_library.run("plan", "--gpus", "1xH100", "--show-commands")

    assert before.code == 1
    assert "stack.yaml:4: services.coder.model: model 'qwen2.5-coder:32b-q5_k_m'" in before.out
    assert "has not been downloaded" in before.out and "fix: servestack pull qwen2.5-coder:32b-q5_k_m" in before.out
    assert pulled.code == 0, pulled.output
    assert (snapshot(pull_library, WEIGHTS_REPO) / "model.safetensors").is_file()
    assert planned.code == 0, planned.output
    assert f"--model {snapshot(pull_library, GGUF_REPO) / Q5}" in planned.out
    assert f"vllm serve {WEIGHTS_REPO} --served-model-name big" in planned.out
