"""Test data for planner tests: reference configs, catalog facts, stacks from YAML text."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from servestack.gpus import parse_inventory
from servestack.modelinfo import Catalog, ModelFacts
from servestack.plan import Finding, FitRequest, Plan, Severity, make_plan
from servestack.stack import Stack, parse_stack

REFERENCE: dict[str, dict[str, Any]] = json.loads(
    (Path(__file__).parents[1] / "modelinfo" / "data" / "model_configs.json").read_text()
)
CATALOG = Catalog.builtin()

DEEPSEEK = "deepseek-ai/DeepSeek-V2.5-1210"
CODESTRAL = "mistralai/Codestral-22B-v0.1"
GLM = "zai-org/GLM-4.7"
MIXTRAL = "mistralai/Mixtral-8x7B-Instruct-v0.1"
LLAMA_8B = "meta-llama/Llama-3.1-8B-Instruct"
LLAMA_70B = "meta-llama/Llama-3.1-70B-Instruct"
QWEN_05B = "Qwen/Qwen2.5-0.5B-Instruct"

# Seeds 000 and 001 on one box: Codestral on GPU 1 at 0.6, DeepSeek on GPUs 0-3 with the engine default.
SEEDS_000_001 = f"""
version: 1
services:
  deepseek:
    engine: sglang
    model: {DEEPSEEK}
    port: 30000
    gpus: [0, 1, 2, 3]
  codestral:
    engine: sglang
    model: {CODESTRAL}
    port: 30002
    gpus: [1]
    context_length: 8192
    memory_fraction: 0.6
"""


def planner_errors(findings: list[Finding]) -> list[Finding]:
    """Errors other than "engine not built in yet" (vLLM/SGLang/mistral.rs adapters land separately)."""
    return [f for f in findings if f.severity is Severity.ERROR and f.code != "engine-unavailable"]


def planner_findings(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.code != "engine-unavailable"]


def facts(model_id: str) -> ModelFacts:
    found = CATALOG.facts(model_id)
    assert found is not None, model_id
    return found


def request(model_id: str, engine: str, **settings: Any) -> FitRequest:
    return FitRequest(engine, facts(model_id), **settings)


def stack(text: str) -> Stack:
    return parse_stack(text, source="<test>", environ={})


def plan(text: str, gpus: str = "cpu", **overrides: ModelFacts) -> Plan:
    """Plan a stack on a spec inventory, every service's model taken from the catalog."""
    parsed = stack(text)
    known = {name: f for name, s in parsed.services.items() if (f := CATALOG.facts(s.model)) is not None}
    return make_plan(parsed, parse_inventory(gpus), {**known, **overrides})


def one_service(engine: str, model: str, **fields: Any) -> str:
    lines = [f"    {key}: {json.dumps(value)}" for key, value in fields.items()]
    return "\n".join(["version: 1", "services:", "  svc:", f"    engine: {engine}", f"    model: {model}", *lines])
