"""KV bytes, weight bytes and the per-engine memory rules, against the reference figures and engine logs."""

from __future__ import annotations

import dataclasses

import pytest
from plan_fixtures import CODESTRAL, DEEPSEEK, LLAMA_8B, QWEN_05B, REFERENCE, facts, request

from servestack.engines.memory import kv_bytes_per_token, model_weights
from servestack.engines.memory.sglang import default_mem_fraction_static
from servestack.gpus import GIB, Gpu, parse_inventory
from servestack.modelinfo.params import parameter_groups
from servestack.plan import Verdict, evaluate

MODELS = sorted(REFERENCE)


@pytest.mark.parametrize("model_id", MODELS)
def test_kv_bytes_per_token_at_tp1(model_id: str) -> None:
    assert (
        kv_bytes_per_token(facts(model_id), 1, 2.0) == REFERENCE[model_id]["_computed"]["kv_bytes_per_token_tp1_16bit"]
    )


@pytest.mark.parametrize("model_id", MODELS)
def test_bf16_weights(model_id: str) -> None:
    weights = model_weights(facts(model_id))
    assert round(weights.bytes / GIB, 2) == pytest.approx(REFERENCE[model_id]["_computed"]["bf16_weight_GiB"], abs=0.01)


def test_mla_kv_is_replicated_not_divided_by_tp() -> None:
    deepseek = facts(DEEPSEEK)
    assert kv_bytes_per_token(deepseek, 1, 2.0) == kv_bytes_per_token(deepseek, 8, 2.0) == 69_120


@pytest.mark.parametrize(("tp", "expected"), [(1, 131_072), (2, 65_536), (8, 16_384), (16, 16_384)])
def test_gqa_kv_divides_until_heads_are_replicated(tp: int, expected: int) -> None:
    assert kv_bytes_per_token(facts(LLAMA_8B), tp, 2.0) == expected


def test_fp8_kv_halves_and_fp8_weights_are_one_byte_per_linear_parameter() -> None:
    llama = facts(LLAMA_8B)
    assert kv_bytes_per_token(llama, 1, 1.0) == 65_536
    fp8 = model_weights(llama, quantization="fp8").bytes
    linear = sum(g.parameters for g in parameter_groups(llama) if g.kind == "linear")
    assert fp8 == linear + 2 * (llama.parameters - linear)  # embeddings, lm_head and norms stay 16-bit


def test_exact_bytes_from_files_win_unless_the_format_changes() -> None:
    known = dataclasses.replace(facts(LLAMA_8B), weight_bytes=16_000_000_000)
    assert model_weights(known).bytes == 16_000_000_000
    assert model_weights(known, dtype="float32").bytes == known.parameters * 4


# engines.md §3.3: the engines' own figures, which the planner must match within ±10%.
def test_sglang_llama_8b_on_an_h100_at_0_88_matches_444_500_tokens() -> None:
    fit = evaluate(request(LLAMA_8B, "sglang", fraction=0.88), parse_inventory("1xH100-80GB").gpus, 1)
    assert fit.verdict is Verdict.FITS
    assert fit.kv_tokens == pytest.approx(444_500, rel=0.10)
    assert fit.memory is not None and fit.memory.fraction == 0.88


def test_vllm_qwen_05b_on_an_rtx_4090_at_0_92_matches_1_793_232_tokens() -> None:
    fit = evaluate(request(QWEN_05B, "vllm", fraction=0.92), parse_inventory("1xRTX-4090").gpus, 1)
    assert fit.verdict is Verdict.FITS
    assert fit.kv_tokens == pytest.approx(1_793_232, rel=0.10)
    assert fit.kv_tokens % 16 == 0  # vLLM allocates blocks of 16 tokens


@pytest.mark.parametrize(
    ("spec", "tp", "expected"),
    [
        ("1xH100-80GB", 1, 0.874),  # the example in server_args.py
        ("1xH200", 4, 0.900),
        ("1xA100-80GB", 8, 0.831),
        ("1xRTX-4090", 1, 0.879),
        ("1xB200", 8, 0.821),
    ],
)
def test_sglang_default_mem_fraction_static(spec: str, tp: int, expected: float) -> None:
    assert default_mem_fraction_static(parse_inventory(spec).gpus[0].total_bytes, tp) == expected


def test_vllm_refuses_to_start_when_free_memory_is_below_the_fraction() -> None:
    busy = Gpu(index=0, name="NVIDIA H100 80GB HBM3", total_bytes=int(79.6 * GIB), free_bytes=40 * GIB)
    fit = evaluate(request(LLAMA_8B, "vllm", context=8192), [busy], 1)
    assert fit.verdict is Verdict.DOES_NOT_FIT
    assert "free at startup" in fit.reason


def test_llamacpp_kv_is_exactly_n_ctx_tokens() -> None:
    # ollama #9091: a 48-layer, 8-KV-head model at n_ctx 8192 logs "CUDA0 KV buffer size = 1536.00 MiB".
    fit = evaluate(
        request("codellama/CodeLlama-34b-Instruct-hf", "llamacpp", context=8192), parse_inventory("1xH100").gpus, 1
    )
    assert fit.memory is not None
    assert fit.memory.kv == 1536 * 2**20
    assert fit.kv_tokens == 8192 and fit.sequences == 1


def test_llamacpp_splits_layers_and_their_kv_over_the_gpus() -> None:
    gpus = parse_inventory("2xRTX-4090").gpus
    one = evaluate(request(CODESTRAL, "llamacpp", context=4096), gpus[:1], 1)
    two = evaluate(request(CODESTRAL, "llamacpp", context=4096), gpus, 1)
    assert one.verdict is Verdict.DOES_NOT_FIT  # 41.4 GiB of bf16 weights on a 24 GiB card
    assert two.verdict is Verdict.FITS  # 20.7 GiB + half the KV + buffers on each
    assert two.memory is not None and one.memory is not None
    layer = one.memory.weights / (facts(CODESTRAL).layers + 1)
    assert abs(two.memory.weights - one.memory.weights / 2) < layer  # whole layers on each GPU


def test_mistralrs_uses_its_pa_memory_fraction() -> None:
    fit = evaluate(request(LLAMA_8B, "mistralrs", context=8192), parse_inventory("1xH100").gpus, 1)
    assert fit.verdict is Verdict.FITS
    assert fit.memory is not None and fit.memory.fraction == 0.9
    assert fit.kv_tokens % 32 == 0


@pytest.mark.parametrize(
    ("engine", "model_id", "fraction", "free_gib"),
    [("sglang", CODESTRAL, 0.6, 55.8), ("vllm", LLAMA_8B, 0.6, 56.2), ("mistralrs", LLAMA_8B, 0.6, 56.2)],
)
def test_what_a_fraction_does_not_claim_is_left_free_not_overhead(
    engine: str, model_id: str, fraction: float, free_gib: float
) -> None:
    """Seed 000 runs Codestral at 0.6 of an H200: the other 40% is for other services, not the engine."""
    fit = evaluate(request(model_id, engine, fraction=fraction, context=8192), parse_inventory("1xH200").gpus, 1)
    memory = fit.memory
    assert memory is not None and fit.verdict is Verdict.FITS
    assert memory.free / GIB == pytest.approx(free_gib, abs=0.05)
    assert memory.overhead < 3 * GIB
    assert memory.weights + memory.kv + memory.overhead + memory.free == memory.total


@pytest.mark.parametrize("engine", ["sglang", "vllm", "mistralrs", "llamacpp"])
def test_the_figures_add_up_to_the_gpu_with_memory_in_use_elsewhere(engine: str) -> None:
    h100 = parse_inventory("1xH100-80GB").gpus[0]
    busy = dataclasses.replace(h100, free_bytes=h100.total_bytes - 4 * GIB)  # as NVML reports it
    memory = evaluate(request(LLAMA_8B, engine, context=8192), [busy], 1).memory
    assert memory is not None and memory.in_use == 4 * GIB
    assert memory.weights + memory.kv + memory.overhead + memory.free + memory.in_use == memory.total
    assert memory.free >= 0
