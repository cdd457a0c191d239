"""SGLang's memory rule (`python/sglang/srt/model_executor/model_runner.py` `profile_max_num_token`).

SGLang sizes its pool from the memory it measures itself, not from the GPU's total:

    pre    = free memory once the CUDA context, libraries and torch.distributed are up (before weights)
    post   = free memory after loading the weights
    kv     = post − pre × (1 − mem_fraction_static)  =  pre × mem_fraction_static − weights/TP
    tokens = kv // bytes per token, at most --max-total-tokens

So `mem_fraction_static` is a fraction of the memory free at startup that covers weights and the pool;
`(1 − mfs) × pre` is left for activations and CUDA graphs, and what other processes hold shrinks `pre`.
Its default changed with versions (`server_args.py` `_handle_mem_fraction_static`): by TP size until
mid-2025, then by GPU size; a multimodal model's default is reduced for its vision encoder
(`adjust_mem_fraction_for_vlm`). 2026 builds reserve by chunked-prefill size and CUDA-graph batch
(`handle_gpu_memory_settings`); that rule is not modelled yet: without a version the plan follows the
mid-2025 one.
"""

from __future__ import annotations

from collections.abc import Sequence

from servestack.engines.memory.base import CUDA_CONTEXT, GpuMemory, MemoryBudget, MemoryRequest
from servestack.engines.memory.flags import at_least, number
from servestack.engines.memory.kvcache import kv_bytes_per_token, kv_element_bytes
from servestack.engines.memory.weights import model_weights, weight_dtype
from servestack.gpus import GIB, Gpu
from servestack.modelinfo import ModelFacts

MIB = 2**20
# Before the weights a rank holds its CUDA context and libraries: 0.84 GiB on an 80 GB H100 (corpus cases 029,
# 030, 038: 78.81 GiB free of 79.65), but 1.53 and 1.60 GiB on a 24 GB RTX 4090 (case 016; reference
# §2.4: 22.39 GiB free), which case 024 (a 24 GB card, 1 GiB held by the OS) confirms within 1%.
SMALL_GPU = 40 * GIB
SMALL_GPU_CONTEXT = int(1.55 * GIB)
# torch.distributed with TP > 1 (NCCL communicators, custom all-reduce): case 008 logs 1.77–2.01 GiB in use
# per rank at TP 8 before the weights.
PER_RANK = int(0.15 * GIB)

# Until mid-2025 the default followed the TP size alone (case 027: 0.81 at TP 8; cases 016, 029: 0.88).
BY_TP: tuple[tuple[int, float], ...] = ((16, 0.79), (8, 0.81), (4, 0.85), (2, 0.87), (1, 0.88))
# From mid-2025, memory reserved by GPU size (MiB, `parallel_size` = TP): (below GiB, base GiB, GiB per rank).
RESERVED_BY_SIZE: tuple[tuple[float, float, float], ...] = (
    (35, 2.8, 0.1),
    (90, 9.5, 0.5),
    (160, 12.0, 0.5),
    (float("inf"), 32.0, 0.0),
)
GPU_SIZE_DEFAULT = (0, 4, 7)  # the first release with the size-based default (approximately: mid-2025)


class SglangMemory:
    strict_context = True
    caps_context = True  # the scheduler limits requests to the pool (`max_req_len`)
    start_order = (
        "SGLang's mem_fraction_static is a fraction of the memory free when it starts: started after another "
        "service it gets a smaller KV cache than planned here"
    )

    def default_context(self, facts: ModelFacts, args: Sequence[str] = ()) -> int:
        return facts.max_context or 4096

    def default_fraction(self, gpu: Gpu, tp: int, facts: ModelFacts | None = None) -> float | None:
        return default_mem_fraction_static(gpu.total_bytes, tp, facts=facts)

    def budget(self, request: MemoryRequest) -> MemoryBudget:
        facts, gpu = request.facts, request.gpu
        fraction = request.fraction or default_mem_fraction_static(
            gpu.total_bytes, request.tp, facts=facts, version=request.version
        )
        weights = model_weights(facts, dtype=request.dtype, quantization=request.quantization)
        element = kv_element_bytes(request.kv_cache_dtype, weight_dtype(facts, request.dtype))
        per_gpu = weights.per_gpu(request.tp)
        before = before_weights(gpu, request.tp)
        pre = gpu.available_bytes - before
        kv = int(pre * fraction) - per_gpu
        cap = number(request.args, "--max-total-tokens")
        memory = GpuMemory(
            total=gpu.total_bytes,
            weights=per_gpu,
            kv=kv,
            overhead=before,
            share=fraction,
            fraction=fraction,
            kv_limit=kv,
            outside_claim="activations and CUDA graphs",
        )
        kv_per_token = kv_bytes_per_token(facts, request.tp, element)
        return MemoryBudget(memory, weights, kv_per_token, token_cap=int(cap) if cap else None)


def before_weights(gpu: Gpu, tp: int) -> int:
    """What a rank holds before its weights: the CUDA context and libraries, plus torch.distributed with TP > 1."""
    context = SMALL_GPU_CONTEXT if gpu.total_bytes < SMALL_GPU else CUDA_CONTEXT
    return context + (PER_RANK * tp if tp > 1 else 0)


def default_mem_fraction_static(
    total_bytes: int,
    tp: int,
    *,
    facts: ModelFacts | None = None,
    version: str | None = None,
) -> float:
    """SGLang's automatic `mem_fraction_static` for a GPU of `total_bytes` at TP `tp`, in `version`."""
    if not at_least(version, *GPU_SIZE_DEFAULT):
        fraction = next(value for at_tp, value in BY_TP if tp >= at_tp)
    else:
        total_mib = total_bytes / MIB
        fraction = round((total_mib - _reserved_by_size_mib(total_bytes, tp)) / total_mib, 3)
    if facts is not None and facts.is_multimodal:
        fraction = _for_vision(fraction, facts, version)
    return fraction


def _reserved_by_size_mib(total_bytes: int, tp: int) -> float:
    for below_gib, base, per_rank in RESERVED_BY_SIZE:
        if total_bytes / GIB < below_gib:
            return (base + per_rank * tp) * 1024
    raise AssertionError("unreachable: the last row has no upper bound")


def _for_vision(fraction: float, facts: ModelFacts, version: str | None) -> float:
    """`adjust_mem_fraction_for_vlm`: 0.95 of the fraction, and (from mid-2025) 10% less again for every
    doubling of the vision encoder's size over a ViT-L/14 (24 layers of width 1024), within 0.8–1.05."""
    if not at_least(version, *GPU_SIZE_DEFAULT):
        return round(fraction * 0.95, 3)
    layers, width = facts.vision_layers or 24, facts.vision_width or 1024
    complexity = layers * width**2 / (24 * 1024**2)
    return fraction * 0.95 * max(0.8, min(1.05, 1.0 - 0.1 * (complexity - 1.0)))
