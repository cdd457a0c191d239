"""Each engine's memory rule: the parts its own code sizes, by version and by the flags a service passes.

Whole cases against real logs are in tests/plan/test_corpus_replay.py; these pin the mechanisms.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from servestack.engines import Unchecked, get_engine
from servestack.engines.memory import MemoryRequest, MemoryRule
from servestack.engines.memory.sglang import default_mem_fraction_static
from servestack.engines.memory.vllm import activation_per_token, is_v1, profile_batch
from servestack.gpus import GIB, Gpu, parse_inventory
from servestack.modelinfo import Catalog, ModelFacts

CATALOG = Catalog.builtin()
LLAMA_8B = "meta-llama/Llama-3.1-8B-Instruct"
MIXTRAL = "mistralai/Mixtral-8x7B-Instruct-v0.1"
DEEPSEEK = "deepseek-ai/DeepSeek-V2.5-1210"


def facts(model_id: str) -> ModelFacts:
    found = CATALOG.facts(model_id)
    assert found is not None
    return found


def rule(engine: str) -> MemoryRule:
    memory = get_engine(engine).memory
    assert not isinstance(memory, Unchecked)
    return memory


def ask(model_id: str, spec: str, *, tp: int = 1, context: int = 8192, **fields: Any) -> MemoryRequest:
    gpus = parse_inventory(spec).gpus
    return MemoryRequest(facts(model_id), gpus, tp, context, **fields)


@pytest.mark.parametrize(
    ("version", "env", "v1"),
    [("0.6.4", {}, False), ("0.7.1", {"VLLM_USE_V1": "1"}, True), ("0.8.5", {"VLLM_USE_V1": "0"}, False),
     ("0.9.2", {}, True), ("0.11.0", {"VLLM_USE_V1": "0"}, True), (None, {}, True)],
)  # fmt: skip
def test_vllm_engine_generation(version: str | None, env: dict[str, str], v1: bool) -> None:
    assert is_v1(version, env) is v1


V0 = {"VLLM_USE_V1": "0"}


@pytest.mark.parametrize(
    ("version", "env", "spec", "context", "args", "batch"),
    [
        ("0.6.4", {}, "1x23.58GiB", 20000, (), (20000, 256)),  # V0 without chunked prefill: the whole context
        ("0.6.4", {}, "1x23.58GiB", 40960, (), (2048, 256)),  # chunked prefill past 32k
        ("0.8.3", V0, "1x23.58GiB", 8192, (), (2048, 256)),  # V0 from 0.8: always chunked
        ("0.9.2", {}, "1xH100-80GB", 8192, (), (8192, 1024)),  # V1 on a GPU of 70 GiB and more
        ("0.9.2", {}, "1xRTX-4090", 8192, (), (2048, 256)),
        ("0.9.2", {}, "1xRTX-4090", 8192, ("--max-num-seqs", "8"), (2048, 8)),
    ],
)
def test_vllm_profiles_the_batch_its_version_defaults_to(
    version: str, env: dict[str, str], spec: str, context: int, args: tuple[str, ...], batch: tuple[int, int]
) -> None:
    request = ask(LLAMA_8B, spec, context=context, version=version, args=args, env=env)
    assert profile_batch(request, is_v1(version, env)) == batch


def test_vllm_profiles_the_fused_moe_workspace_of_moe_layers() -> None:
    """Per token, the dense MLP's 3 × intermediate / TP values, an MoE layer's top-k × (max(2 × width / TP,
    hidden) + width / TP) (`fused_experts`), each beside 3 hidden-sized buffers, in 16 bits."""
    assert activation_per_token(facts(LLAMA_8B), 2) == (3 * 14336 // 2 + 3 * 4096) * 2
    assert activation_per_token(facts(MIXTRAL), 2) == (2 * (max(2 * 7168, 4096) + 7168) + 3 * 4096) * 2


def test_vllm_v0_pads_the_mla_latent_and_v1_does_not() -> None:
    v0 = rule("vllm").budget(ask(DEEPSEEK, "8xH100-80GB", tp=8, version="0.7.2"))
    v1 = rule("vllm").budget(ask(DEEPSEEK, "8xH100-80GB", tp=8, version="0.9.2"))
    assert (v0.kv_per_token, v1.kv_per_token) == (60 * 640 * 2, 60 * 576 * 2)  # corpus case 006: 1280 B per layer


def test_vllm_refuses_to_start_below_its_fraction_only_in_v1() -> None:
    busy = Gpu(0, "H100", int(79.6 * GIB), free_bytes=40 * GIB)
    request = MemoryRequest(facts(LLAMA_8B), (busy,), 1, 8192)
    assert rule("vllm").budget(dataclasses.replace(request, version="0.9.2")).startup
    assert not rule("vllm").budget(dataclasses.replace(request, version="0.6.4")).startup


def test_vllm_kv_cache_memory_flag_is_the_pool() -> None:
    budget = rule("vllm").budget(ask(LLAMA_8B, "1xH100-80GB", args=("--kv-cache-memory", str(10 * GIB))))
    assert budget.memory.kv == 10 * GIB


@pytest.mark.parametrize(
    ("spec", "tp", "version", "model", "fraction"),
    [
        ("1xH200", 8, "0.4.2", LLAMA_8B, 0.81),  # early 2025: by TP (corpus case 027)
        ("1xRTX-4090", 1, "0.4.4", LLAMA_8B, 0.88),
        ("1xH100-80GB", 1, None, LLAMA_8B, 0.874),  # from mid-2025: by GPU size
        ("1xRTX-4090", 1, None, LLAMA_8B, 0.879),
    ],
)
def test_sglang_default_fraction_by_era(spec: str, tp: int, version: str | None, model: str, fraction: float) -> None:
    total = parse_inventory(spec).gpus[0].total_bytes
    assert default_mem_fraction_static(total, tp, facts=facts(model), version=version) == fraction


def test_sglang_reduces_a_multimodal_default_for_its_vision_encoder() -> None:
    vlm = dataclasses.replace(facts(LLAMA_8B), vision_parameters=1, vision_layers=32, vision_width=1280)
    total = parse_inventory("1xH100-80GB").gpus[0].total_bytes
    assert default_mem_fraction_static(total, 1, facts=vlm, version="0.4.3") == 0.836  # 0.88 × 0.95 (case 030)
    complexity = 32 * 1280**2 / (24 * 1024**2)  # later: 10% less per doubling of a ViT-L/14
    expected = 0.874 * 0.95 * (1 - 0.1 * (complexity - 1))
    assert default_mem_fraction_static(total, 1, facts=vlm) == pytest.approx(expected)


def test_sglang_sizes_from_what_it_measures_free_and_honours_max_total_tokens() -> None:
    h100 = rule("sglang").budget(ask(LLAMA_8B, "1xH100-80GB", fraction=0.88))
    rtx = rule("sglang").budget(ask(LLAMA_8B, "1xRTX-4090", fraction=0.88))
    assert h100.memory.overhead == int(0.85 * GIB)  # 78.81 GiB free of an H100's 79.65 before the weights
    assert rtx.memory.overhead == int(1.55 * GIB)  # 22.39-22.46 GiB free of a 4090's 23.99
    capped = rule("sglang").budget(ask(LLAMA_8B, "1xH100-80GB", args=("--max-total-tokens", "20480")))
    assert capped.token_cap == 20480


def test_llamacpp_offloads_the_last_layers_and_their_kv_only() -> None:
    """`-ngl 15` of Mixtral's 32 blocks: 15 blocks and their KV on the GPU, the output layer on the CPU (case 035)."""
    full = rule("llama-server").budget(ask(MIXTRAL, "1x24GiB", context=512))
    part = rule("llama-server").budget(ask(MIXTRAL, "1x24GiB", context=512, args=("-ngl", "15")))
    assert part.memory.kv == 15 * 2 * 2**20 and full.memory.kv == 32 * 2 * 2**20  # 2 MiB per layer at 512 cells
    layers = full.weights.bytes - part.weights.bytes  # the same model either way
    assert layers == 0 and part.memory.weights < full.memory.weights * 15 / 32


def test_llamacpp_splits_layers_by_tensor_split() -> None:
    """`-ts 3,10` over two GPUs: 15 of Qwen2.5-Coder-32B's 65 layers on the first (case 015)."""
    model = "Qwen/Qwen2.5-Coder-32B-Instruct"
    args = ("-ts", "3,10", "-ctk", "q8_0", "-ctv", "q8_0")
    budget = rule("llama-server").budget(ask(model, "2xRTX-4090", context=32000, args=args))
    per_layer = 32000 * 2 * 1024 * 34 / 32  # K and V, 1024 values each, in q8_0
    assert budget.memory.kv == pytest.approx(49 * per_layer)  # the fuller GPU binds: 49 layers


def test_llamacpp_sliding_window_layers_get_a_small_cache_from_the_swa_builds() -> None:
    """Gemma 3 27B at -c 49152 with 16 slots: 52 window layers hold 1024 × 16 + 2048 cells in b5452 (case 009)."""
    gemma = dataclasses.replace(
        facts(LLAMA_8B), layers=62, kv_heads=16, head_dim=128, sliding_window=1024, sliding_window_layers=52
    )
    args = ("--parallel", "16", "-b", "2048")
    request = MemoryRequest(gemma, parse_inventory("1xL40S").gpus, 1, 49152, args=args)
    cell = 2 * 16 * 128 * 2
    new = rule("llama-server").budget(dataclasses.replace(request, version="b5452"))
    old = rule("llama-server").budget(dataclasses.replace(request, version="b4000"))
    assert new.memory.kv == (10 * 49152 + 52 * 18432) * cell
    assert old.memory.kv == 62 * 49152 * cell


def test_llamacpp_caches_deepseeks_latent_from_the_mla_builds() -> None:
    new = rule("llama-server").budget(ask(DEEPSEEK, "1x1024GiB", context=4096, version="b6000"))
    old = rule("llama-server").budget(ask(DEEPSEEK, "1x1024GiB", context=4096, version="b4670"))
    assert new.memory.kv == 4096 * 60 * 576 * 2
    assert old.memory.kv == 4096 * 60 * 128 * (192 + 128) * 2  # every head's K and V (case 014)


def test_mistralrs_server_sizes_its_pool_for_the_context_and_serve_for_90_percent() -> None:
    old = rule("mistralrs-server").budget(ask(LLAMA_8B, "1xRTX-4090", context=4096))
    new = rule("mistralrs").budget(ask(LLAMA_8B, "1xRTX-4090", context=4096))
    assert old.memory.kv == 4096 * old.kv_per_token and old.memory.fraction is None
    assert new.memory.fraction == 0.9 and new.memory.kv > 4 * old.memory.kv
