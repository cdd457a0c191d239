"""make_plan over whole stacks: placement, sharing, ports, context, decisions, and the default stack."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from plan_fixtures import (
    DEEPSEEK,
    LLAMA_8B,
    MIXTRAL,
    SEEDS_000_001,
    facts,
    one_service,
    plan,
    planner_errors,
    planner_findings,
    stack,
)

from servestack.gpus import Gpu, Inventory, parse_inventory
from servestack.modelinfo import Quantization, gguf_facts
from servestack.plan import Finding, Severity, Verdict, make_plan
from servestack.stack import load_default_stack, resolve_model


def codes(findings: list[Finding]) -> list[str]:
    return [f.code for f in findings]


def test_seeds_000_and_001_on_one_box_over_commit_gpu_1_naming_both() -> None:
    result = plan(SEEDS_000_001, "4xH200")
    [over] = [f for f in result.findings if f.code == "gpu-over-committed"]
    assert over.severity is Severity.ERROR
    assert over.message.startswith("GPU 1 is over-committed")
    assert "deepseek" in over.message and "codestral" in over.message
    assert "0.90" in over.message and "0.60" in over.message  # SGLang's default at TP 4, and the seed's 0.6
    assert "own" in over.fix  # neither fraction can shrink enough: deepseek needs ≥ 0.88 of the GPU
    assert over in result.errors
    deepseek = result.services["deepseek"]
    assert deepseek.verdict is Verdict.FITS and deepseek.config.tp == 4
    # The engine default is what the plan assumed; it is shown as a decision, not added to the command.
    assert deepseek.config.memory_fraction is None
    assert any(d.setting == "memory_fraction" and d.value == 0.9 for d in deepseek.decisions)


def test_each_seed_alone_is_fine() -> None:
    text = SEEDS_000_001.replace("gpus: [1]", "gpus: [4]")
    result = plan(text, "5xH200")
    assert "gpu-over-committed" not in codes(result.all_findings())
    assert result.services["codestral"].verdict is Verdict.FITS


def test_default_stack_plans_without_error_on_a_cpu_machine() -> None:
    default = load_default_stack()
    model = resolve_model(default.services["smollm2"].model)
    for known in ({}, {"smollm2": gguf_facts(Path(model))}):
        result = make_plan(default, Inventory.cpu(), known, models={"smollm2": model})
        assert result.errors == []
        service = result.services["smollm2"]
        assert service.config.gpus == () and service.config.tp == 1
        assert service.config.memory_fraction is None  # llama.cpp has none
        assert service.config.context_length == 2048
    assert service.verdict is Verdict.CPU
    assert service.kv_tokens == 2048 and service.kv_bytes_per_token == 30 * 2 * 3 * 64 * 2


def test_make_plan_keeps_its_skeleton_signature() -> None:
    default = load_default_stack()
    result = make_plan(default, models={"smollm2": "/x.gguf"})
    assert result.services["smollm2"].config.model == "/x.gguf"
    assert result.services["smollm2"].name == "smollm2"


def test_an_unpinned_service_gets_free_gpus_and_the_smallest_tp_that_fits() -> None:
    text = one_service("vllm", MIXTRAL, context_length=8192)
    service = plan(text, "4xH100-80GB").services["svc"]
    assert service.config.gpus == (0, 1) and service.config.tp == 2
    assert service.config.memory_fraction is None
    assert {d.setting: d.flag for d in service.decisions} == {
        "tp": "--tensor-parallel-size 2",
        "gpus": "CUDA_VISIBLE_DEVICES=0,1",
        "memory_fraction": "--gpu-memory-utilization 0.9",
    }
    assert service.memory is not None and service.kv_tokens and service.full_context_sequences


def test_unpinned_services_skip_gpus_pinned_by_others() -> None:
    text = f"""
services:
  pinned: {{engine: vllm, model: {LLAMA_8B}, gpus: [0], context_length: 8192}}
  free: {{engine: vllm, model: {LLAMA_8B}, context_length: 8192}}
  later: {{engine: sglang, model: {LLAMA_8B}, context_length: 8192}}
"""
    result = plan(text, "3xH100-80GB")
    assert [result.services[n].config.gpus for n in ("pinned", "free", "later")] == [(0,), (1,), (2,)]
    assert planner_errors(result.all_findings()) == []


def test_not_enough_free_gpus() -> None:
    text = f"""
services:
  a: {{engine: vllm, model: {MIXTRAL}, gpus: [0]}}
  b: {{engine: vllm, model: {MIXTRAL}, tp: 2, context_length: 8192}}
"""
    assert "not-enough-gpus" in codes(planner_errors(plan(text, "2xH100-80GB").errors))


def test_a_gpu_that_does_not_exist() -> None:
    [error] = planner_errors(plan(one_service("sglang", LLAMA_8B, gpus=[4]), "4xH200").errors)
    assert error.code == "gpu-missing" and error.message == "GPU 4 does not exist"
    assert "0, 1, 2, 3" in error.reason


def test_tp_must_equal_the_pinned_gpus() -> None:
    [error] = planner_errors(plan(one_service("vllm", LLAMA_8B, gpus=[0, 1], tp=4), "4xH200").errors)
    assert error.code == "tp-gpu-mismatch"


def test_an_invalid_tp_names_the_rule_and_the_valid_sizes() -> None:
    result = plan(one_service("sglang", DEEPSEEK, gpus=[0, 1, 2]), "4xH200")
    [error] = planner_errors(result.errors)
    assert error.code == "tp-invalid"
    assert "128 attention heads are not divisible by TP 3" in error.reason
    assert "1, 2, 4" in error.fix and "`tp: 4`" in error.fix
    assert result.services["svc"].verdict is Verdict.INVALID


def test_a_model_too_big_for_its_gpus_recommends_a_tp() -> None:
    [error] = planner_errors(plan(one_service("vllm", MIXTRAL, gpus=[0]), "4xH100-80GB").errors)
    assert error.code == "weights-do-not-fit"
    assert "`tp: 2`" in error.fix


def test_a_gpu_engine_on_a_cpu_machine() -> None:
    [error] = planner_errors(plan(one_service("vllm", LLAMA_8B)).errors)
    assert error.code == "no-gpu"


def test_an_explicit_context_that_does_not_fit_names_the_largest_that_does() -> None:
    result = plan(one_service("vllm", LLAMA_8B, context_length=131072), "1xA10G")
    [error] = planner_errors(result.errors)
    assert error.code == "context-does-not-fit"
    assert result.services["svc"].config.context_length == 131072  # the user's value stays
    assert "the largest that does is" in error.message and "`context_length:" in error.fix


def test_an_unset_context_is_reduced_to_fit_with_a_warning() -> None:
    service = plan(one_service("vllm", LLAMA_8B), "1xA10G").services["svc"]
    assert codes(planner_findings(service.findings)) == ["context-reduced"]
    assert service.verdict is Verdict.FITS
    assert service.config.context_length is not None and 1024 <= service.config.context_length < 131072
    assert service.config.context_length % 1024 == 0
    assert any(d.flag.startswith("--max-model-len ") for d in service.decisions)


def test_a_context_beyond_the_model_positions() -> None:
    result = plan(one_service("sglang", LLAMA_8B, context_length=200_000), "1xH200")
    assert "context-too-long" in codes(planner_errors(result.errors))


def test_unknown_model_plans_without_a_memory_check() -> None:
    service = plan(one_service("vllm", "someone/private-model", tp=2), "2xH100-80GB").services["svc"]
    [unknown] = planner_findings(service.findings)
    assert unknown.code == "facts-unknown" and unknown.severity is Severity.WARNING
    assert service.verdict is Verdict.UNCHECKED
    assert service.config.gpus == (0, 1) and service.config.memory_fraction is None
    assert [d.value for d in service.decisions if d.setting == "memory_fraction"] == [0.9]


@pytest.mark.parametrize(
    ("fractions", "code"),
    [((0.5, 0.5), "gpu-over-capacity"), ((0.6, 0.5), "gpu-over-committed"), ((0.45, 0.45), None)],
)
def test_two_vllm_services_sharing_a_gpu(fractions: tuple[float, float], code: str | None) -> None:
    text = f"""
services:
  a: {{engine: vllm, model: {LLAMA_8B}, gpus: [0], memory_fraction: {fractions[0]}, context_length: 8192}}
  b: {{engine: vllm, model: {LLAMA_8B}, gpus: [0], memory_fraction: {fractions[1]}, context_length: 8192}}
"""
    found = [f.code for f in plan(text, "1xH100-80GB").findings]
    assert found == ([code] if code else [])


def test_llamacpp_on_a_gpu_shares_by_its_bytes() -> None:
    text = f"""
services:
  big: {{engine: vllm, model: {LLAMA_8B}, gpus: [0], context_length: 8192}}
  small: {{engine: llamacpp, model: {LLAMA_8B}, gpus: [0], context_length: 32768}}
"""
    result = plan(text, "1xH100-80GB")
    small = result.services["small"]
    assert small.memory is not None and small.memory.fraction is None and 0.2 < small.memory.share < 0.3
    [over] = result.findings
    assert over.code in ("gpu-over-committed", "gpu-over-capacity")
    assert "big" in over.message and "small" in over.message
    assert "memory_fraction" in over.fix and "on big" in over.fix


def test_sglang_sharing_warns_about_start_order() -> None:
    text = f"""
services:
  a: {{engine: sglang, model: {LLAMA_8B}, gpus: [0], memory_fraction: 0.45, context_length: 8192}}
  b: {{engine: vllm, model: {LLAMA_8B}, gpus: [0], memory_fraction: 0.45, context_length: 8192}}
"""
    [warning] = plan(text, "1xH100-80GB").findings
    assert warning.code == "shared-gpu-start-order" and warning.service == "a"


def test_a_port_in_args_that_another_service_uses() -> None:
    text = f"""
services:
  a: {{engine: llamacpp, model: {LLAMA_8B}, port: 30000}}
  b: {{engine: llamacpp, model: {LLAMA_8B}, args: ["--port", "30000"]}}
  c: {{engine: llamacpp, model: {LLAMA_8B}, args: ["--port=8000"]}}
"""
    errors = [f for f in plan(text).errors if f.code == "port-conflict"]
    assert [(f.service, f.message) for f in errors] == [
        ("b", "port 30000 of service b is already used by service a"),
        ("c", "port 8000 of service c is already used by the gateway"),
    ]


def test_nvml_free_memory_is_what_sglang_sizes_from() -> None:
    idle = parse_inventory("1xH100-80GB")
    h100 = idle.gpus[0]
    busy = Inventory(gpus=(Gpu(0, h100.name, h100.total_bytes, free_bytes=h100.total_bytes // 2),), source="nvml")
    text = one_service("sglang", LLAMA_8B, context_length=8192)
    known = {"svc": facts(LLAMA_8B)}
    full = make_plan(stack(text), idle, known).services["svc"]
    half = make_plan(stack(text), busy, known).services["svc"]
    assert full.kv_tokens is not None and half.kv_tokens is not None
    assert half.kv_tokens < full.kv_tokens / 2


def test_llamacpp_has_no_memory_fraction() -> None:
    [error] = planner_errors(plan(one_service("llamacpp", LLAMA_8B, memory_fraction=0.5)).errors)
    assert (error.code, error.key) == ("setting-unsupported", ("services", "svc", "memory_fraction"))
    assert "no GPU memory fraction" in error.message


def test_replicas_get_gpus_of_their_own() -> None:
    text = f"""
services:
  a: {{engine: vllm, model: {MIXTRAL}, tp: 2, replicas: 2, context_length: 8192}}
  b: {{engine: vllm, model: {MIXTRAL}, tp: 2, context_length: 8192}}
"""
    result = plan(text, "8xH100-80GB")
    a, b = result.services["a"], result.services["b"]
    assert a.replica_gpus == ((0, 1), (2, 3)) and a.gpus_of(1) == (2, 3)
    assert b.config.gpus == (4, 5)
    assert not result.errors


def test_replicas_that_do_not_fit_the_free_gpus_are_an_error() -> None:
    text = one_service("vllm", MIXTRAL, tp=2, replicas=3, context_length=8192)
    [error] = [f for f in plan(text, "4xH100-80GB").errors if f.code == "not-enough-gpus"]
    assert "needs 6 GPU(s) for TP 2 × 3 replicas but only 4 are free" in error.message


def test_pinned_gpus_are_split_between_replicas() -> None:
    text = one_service("sglang", MIXTRAL, gpus=[4, 5, 6, 7], replicas=2, context_length=8192)
    service = plan(text, "8xH100-80GB").services["svc"]
    assert service.config.tp == 2 and service.replica_gpus == ((4, 5), (6, 7))


@pytest.mark.parametrize("engine", ["llama-server", "mistralrs-server", "mistralrs", "llamacpp", "vllm", "sglang"])
def test_every_engine_we_launch_has_its_memory_checked(engine: str) -> None:
    service = plan(one_service(engine, LLAMA_8B, gpus=[0], context_length=8192), "1xRTX4090").services["svc"]
    assert service.verdict is Verdict.FITS
    assert service.memory is not None and service.kv_tokens
    assert "memory-unchecked" not in codes(service.findings)


def test_the_simulator_says_its_memory_is_unchecked_when_given_gpus() -> None:
    pinned = plan(one_service("sim", "m", gpus=[0]), "1xRTX4090").services["svc"]
    [warning] = pinned.findings
    assert (warning.code, warning.severity, warning.key) == (
        "memory-unchecked",
        Severity.WARNING,
        ("services", "svc", "gpus"),
    )
    assert warning.message.startswith("memory unchecked for sim: the simulator puts no model on a GPU")
    assert pinned.verdict is Verdict.UNCHECKED
    assert plan(one_service("sim", "m"), "1xRTX4090").services["svc"].findings == []  # nothing on a GPU


def test_seed_003_says_what_it_does_not_know_about_its_model() -> None:
    """mistralrs-server on GPU 0 with a GGUF that cannot be read here: no silent 'unchecked'."""
    text = one_service("mistralrs-server", "./data/mistral-7b-instruct-q4_k_m.gguf", gpus=[0])
    service = plan(text, "1xRTX4090").services["svc"]
    [unknown] = planner_findings(service.findings)
    assert unknown.code == "facts-unknown" and unknown.message.endswith("memory not checked")


def test_an_unknown_quantisation_is_a_warning_that_names_it_never_a_silent_16_bit() -> None:
    quant = Quantization(method="some_future_method", bits=4)
    known = dataclasses.replace(facts(LLAMA_8B), quantization="some_future_method", quant=quant)
    service = make_plan(stack(one_service("vllm", LLAMA_8B, gpus=[0])), parse_inventory("1xH100-80GB"), {"svc": known})
    [warning] = [f for f in service.services["svc"].findings if f.code == "quantization-unknown"]
    assert warning.severity is Severity.WARNING and "'some_future_method'" in warning.message
    assert "at 4 bits" in warning.message  # the bits its config states
    plain = plan(one_service("vllm", LLAMA_8B, gpus=[0]), "1xH100-80GB").services["svc"]
    assert service.services["svc"].weights_bytes < plain.weights_bytes / 2
