"""`servestack smoke`: exit 0 only for a valid answer; a service that cannot start fails with its log."""

from __future__ import annotations

from pathlib import Path

import pytest

from servestack.controller.smoke import judge
from tests.conftest import run_cli


@pytest.mark.e2e
def test_smoke_of_the_default_stack_passes(home: Path, tmp_path: Path) -> None:
    result = run_cli("smoke", cwd=tmp_path, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "✓ smollm2 answered" in result.stdout


@pytest.mark.e2e
def test_smoke_of_a_broken_service_fails_with_its_log(home: Path, tmp_path: Path) -> None:
    (tmp_path / "broken.gguf").write_bytes(b"not a GGUF file")  # there, but llama.cpp cannot load it
    stack = tmp_path / "stack.yaml"
    stack.write_text(f"services:\n  broken:\n    engine: llamacpp\n    model: {tmp_path}/broken.gguf\n")
    result = run_cli("smoke", "broken", "-f", str(stack), timeout=180)
    assert result.returncode == 1
    assert "exited with code" in result.stderr and "broken.gguf" in result.stderr


@pytest.mark.parametrize(
    ("status", "payload", "ok"),
    [
        (200, {"choices": [{"message": {"content": "Hi there!"}}]}, True),
        (200, {"choices": [{"message": {"content": "  "}}]}, False),
        (200, {"choices": []}, False),
        (200, "not json", False),
        (503, {"error": {"message": "loading"}}, False),
    ],
)
def test_judge_accepts_only_a_non_empty_chat_answer(status: int, payload: object, ok: bool) -> None:
    assert judge(status, payload)[0] is ok
