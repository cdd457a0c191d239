"""Tables on an 80-column terminal: identifiers (variables, key ids, names, models) are printed whole."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from servestack.settings import describe_settings


def cli_at_80_columns(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "servestack", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "80"},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_env_prints_every_variable_whole() -> None:
    out = cli_at_80_columns("env")
    for name, _, _ in describe_settings():
        assert name in out
    assert "…" not in out


def test_keys_list_prints_ids_names_and_models_whole(home: Path) -> None:
    long_name = "a-rather-long-key-name-for-the-research-team"
    cli_at_80_columns("keys", "create", "--name", long_name, "--rpm", "60")
    cli_at_80_columns("keys", "create", "--name", "other", "--models", "SmolLM2-135M-Instruct,smollm2")
    out = cli_at_80_columns("keys", "list")
    ids = [line.split()[0] for line in out.splitlines() if line.strip().startswith("key_")]
    assert len(ids) == 2 and all(len(i) == len("key_") + 12 for i in ids)
    assert long_name in out and "SmolLM2-135M-Instruct" in out and "60 rpm" in out
    assert out.count("…") == 2  # only the masked secrets (sk-ss-…abcd)
