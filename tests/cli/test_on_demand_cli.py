"""CLI mistakes around on-demand services: one clear line and a fix, a non-zero exit."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import run_cli


def test_up_gpus_refuses_an_engine_that_needs_real_gpus(home: Path) -> None:
    result = run_cli("up", "--gpus", "1xH100")  # the default stack: llama.cpp
    assert result.returncode != 0
    assert "--gpus plans for GPUs this machine may not have, and smollm2 runs an engine that needs them" in (
        result.stdout + result.stderr
    )
    assert "use --gpus only with simulated services" in result.stdout + result.stderr


def test_load_with_nothing_running_says_so(home: Path) -> None:
    result = run_cli("load", "chat")
    assert result.returncode != 0 and "nothing is running" in result.stdout + result.stderr
