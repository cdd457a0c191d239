"""The --json schema: stable keys, integers in bytes, every finding once."""

from __future__ import annotations

import json

from plan_fixtures import DEEPSEEK, SEEDS_000_001, plan, request

from servestack.gpus import parse_inventory
from servestack.plan import explore_tp
from servestack.plan.export import EXPLORE_SCHEMA, PLAN_SCHEMA, explore_to_dict, plan_to_dict

SERVICE_KEYS = {
    "engine",
    "model",
    "verdict",
    "gpus",
    "replica_gpus",
    "nodes",
    "replicas",
    "tp",
    "context_length",
    "memory_fraction",
    "load",
    "weights_bytes",
    "kv_bytes_per_token",
    "kv_tokens",
    "full_context_sequences",
    "memory_per_gpu",
    "facts",
    "decisions",
    "calibration",
}


def test_plan_json_schema() -> None:
    result = plan(SEEDS_000_001, "4xH200")
    data = json.loads(json.dumps(plan_to_dict(result)))  # JSON-safe
    assert set(data) == {"schema", "ok", "inventory", "services", "findings", "residency"}
    assert data["residency"]["on_demand"] == {} and data["residency"]["exclusions"] == []
    assert data["schema"] == PLAN_SCHEMA and data["ok"] is False
    assert [g["index"] for g in data["inventory"]["gpus"]] == [0, 1, 2, 3]
    deepseek = data["services"]["deepseek"]
    assert set(deepseek) == SERVICE_KEYS
    assert set(deepseek["memory_per_gpu"]) == {
        "total_bytes",
        "weights_bytes",
        "kv_bytes",
        "overhead_bytes",
        "left_free_bytes",
        "in_use_bytes",
        "share",
        "fraction",
    }
    assert deepseek["verdict"] == "fits" and deepseek["gpus"] == [0, 1, 2, 3] and deepseek["tp"] == 4
    assert isinstance(deepseek["kv_tokens"], int) and deepseek["kv_tokens"] > 0
    assert {d["setting"] for d in deepseek["decisions"]} == {"tp", "context_length", "memory_fraction"}
    over = [f for f in data["findings"] if f["code"] == "gpu-over-committed"]
    assert len(over) == 1 and over[0]["severity"] == "error" and over[0]["service"] is None
    assert set(over[0]) == {"severity", "code", "service", "key", "line", "message", "reason", "fix"}
    assert len(data["findings"]) == len(result.all_findings())


def test_explore_json_schema() -> None:
    fits = explore_tp(request(DEEPSEEK, "sglang"), parse_inventory("4xH200").gpus)
    data = explore_to_dict("deepseek", fits)
    assert data["schema"] == EXPLORE_SCHEMA
    assert [(r["tp"], r["verdict"]) for r in data["rows"]] == [
        (1, "does-not-fit"),
        (2, "does-not-fit"),
        (3, "invalid"),
        (4, "fits"),
    ]
    assert data["rows"][2]["kv_tokens"] is None and data["rows"][3]["kv_tokens"] > 0
