"""End to end with the real default engine (llama-cpp-python, SmolLM2 on the CPU): `up -d` records what
llama.cpp logged it allocated beside the plan, `status` shows it, and after `down` the plan shows it too."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.e2e
MIB = 2**20


def test_llama_cpp_allocates_what_the_plan_predicts_and_status_and_plan_show_it(home: Path, port: int) -> None:
    up = run_cli("up", "-d", "--port", str(port), timeout=120)
    assert up.returncode == 0, up.stderr
    try:
        [replica] = json.loads(run_cli("status", "--json").stdout)["services"]
        table = run_cli("status").stdout
    finally:
        run_cli("down")
    record = replica["calibration"]
    allocated, predicted = record["allocated"], record["predicted"]
    assert allocated["kv_tokens"] == predicted["kv_tokens"] == 2048  # llama.cpp's cells: the context
    assert allocated["kv_bytes"] == predicted["kv_bytes"] == 45 * MIB  # 30 layers × 2 × 3 heads × 64 × f16
    assert allocated["weights_bytes"] == pytest.approx(predicted["weights_bytes"], abs=0.01 * MIB)  # 92.10 MiB
    assert [d["name"] for d in allocated["devices"]] == ["CPU_Mapped", "CPU"]
    assert any("CPU KV buffer size =    45.00 MiB" in line for line in record["lines"])
    assert "2,048 (plan 2,048)" in table

    shown = run_cli("plan")
    assert "measured        KV tokens 2,048 (±0%), KV cache 45 MiB (±0%), weights 92 MiB (±0%)" in shown.stdout
    assert "at its last start here" not in shown.stdout  # no calibration-differs warning
    planned = json.loads(run_cli("plan", "--json").stdout)["services"]["smollm2"]["calibration"]
    assert planned["allocated"] == allocated and planned["time"] == record["time"]
