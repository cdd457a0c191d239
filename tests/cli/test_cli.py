"""The CLI as a user meets it: clear one-line errors, exit codes, no tracebacks."""

from __future__ import annotations

from pathlib import Path

import pytest

from servestack.stack import load_stack
from tests.conftest import run_cli


def test_typo_in_stack_file_is_one_clear_line(home: Path, tmp_path: Path) -> None:
    stack = tmp_path / "stack.yaml"
    stack.write_text("services:\n  a:\n    engine: llamacpp\n    model: x.gguf\n    contxt_length: 10\n")
    result = run_cli("up", "-f", str(stack))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"{stack}:5: services.a.contxt_length: unknown key (did you mean 'context_length'?)" in result.stderr


def test_missing_stack_file_suggests_init(home: Path, tmp_path: Path) -> None:
    result = run_cli("up", "-f", str(tmp_path / "none.yaml"))
    assert result.returncode == 1
    assert "stack file not found" in result.stderr and "servestack init" in result.stderr


def test_init_writes_the_default_stack_and_refuses_to_overwrite(home: Path, tmp_path: Path) -> None:
    first = run_cli("init", cwd=tmp_path)
    assert first.returncode == 0
    stack = load_stack(tmp_path / "stack.yaml", environ={})
    assert stack.services["smollm2"].engine == "llamacpp"
    assert "# servestack stack file" in (tmp_path / "stack.yaml").read_text()
    second = run_cli("init", cwd=tmp_path)
    assert second.returncode == 1 and "already exists" in second.stderr and "--force" in second.stderr


def test_status_down_and_logs_when_nothing_runs(home: Path) -> None:
    assert "nothing is running" in run_cli("status").stdout
    assert "nothing is running" in run_cli("down").stdout
    logs = run_cli("logs", "nope")
    assert logs.returncode == 1 and "no log for service 'nope'" in logs.stderr


def test_version_and_env() -> None:
    assert run_cli("version").stdout.startswith("servestack ")
    assert "SERVESTACK_HOME" in run_cli("env").stdout


def test_plan_show_commands_prints_the_seed_command(home: Path) -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "000-codestral-sglang-apptainer.yaml"
    result = run_cli("plan", "-f", str(example), "--gpus", "4xH200", "--show-commands")
    assert result.returncode == 1, result.stderr  # its image, model cache and /etc/pki are not on this machine
    expected = (
        "python3 -m sglang.launch_server --model-path mistralai/Codestral-22B-v0.1 --host 0.0.0.0 "
        "--port 30002 --tp-size 1 --context-length 8192 --mem-fraction-static 0.6"
    )
    assert expected in result.stdout
    assert "APPTAINERENV_CUDA_VISIBLE_DEVICES=1" in result.stdout


def test_a_bad_settings_variable_is_one_clear_line(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVESTACK_STOP_TIMEOUT", "abc")
    result = run_cli("status")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: SERVESTACK_STOP_TIMEOUT='abc': Input should be a valid number")
    assert "servestack env" in result.stderr
