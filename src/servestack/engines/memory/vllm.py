"""vLLM's memory rule (`vllm/v1/worker/gpu_worker.py`, reference/engines.md §2.3).

    requested = total × gpu_memory_utilization         (a fraction of TOTAL memory, per process)
    kv        = requested − weights/tp − peak activation − non-torch memory
    tokens    = kv // (bytes per token × 16) × 16       (blocks of 16 tokens)

At startup vLLM refuses to run when free memory is below `requested`. Peak activation is what a
dummy forward pass of `max_num_batched_tokens` takes; it is estimated from the model's widths
(checked against the measured 0.31 GiB for Qwen2.5-0.5B). CUDA graphs are captured from the
headroom above the fraction, as in 2024–2025 V1 releases.
"""

from __future__ import annotations

from collections.abc import Sequence

from servestack.engines.memory.base import CUDA_CONTEXT, GpuMemory, MemoryBudget, MemoryRequest
from servestack.engines.memory.kvcache import kv_bytes_per_token, kv_element_bytes
from servestack.engines.memory.weights import model_weights, weight_dtype
from servestack.gpus import GIB, Gpu
from servestack.modelinfo import ModelFacts

# 0.9 up to 2025 and 0.92 in 2026 releases; the plan always passes it explicitly.
DEFAULT_UTILIZATION = 0.9
BLOCK_TOKENS = 16
MAX_BATCHED_TOKENS = 8192  # V1 default max_num_batched_tokens for the OpenAI server
MAX_SEQS = 256  # default max_num_seqs: the sampler's dummy batch
ACTIVATION_BYTES = 2
LOGIT_BYTES = 4
# Non-torch memory (cuBLAS, NCCL, allocator slack): 0.30 GiB measured at TP 1 on an RTX 4090;
# TP > 1 adds NCCL communicators and custom all-reduce buffers (assumed 0.4 GiB more).
NON_TORCH = int(0.3 * GIB)
NON_TORCH_TP = int(0.7 * GIB)


class VllmMemory:
    start_order = None
    strict_context = True

    def default_context(self, facts: ModelFacts, args: Sequence[str] = ()) -> int:
        return facts.max_context or 4096

    def default_fraction(self, gpu: Gpu, tp: int, facts: ModelFacts | None = None) -> float | None:
        return DEFAULT_UTILIZATION

    def budget(self, request: MemoryRequest) -> MemoryBudget:
        facts = request.facts
        fraction = request.fraction or DEFAULT_UTILIZATION
        gpu = request.gpu
        weights = model_weights(facts, dtype=request.dtype, quantization=request.quantization)
        element = kv_element_bytes(request.kv_cache_dtype, weight_dtype(facts, request.dtype))
        per_gpu = -(-weights.bytes // request.tp)
        requested = int(gpu.total_bytes * fraction)
        overhead = peak_activation(facts, request.tp) + (NON_TORCH if request.tp == 1 else NON_TORCH_TP)
        kv = requested - per_gpu - overhead
        memory = GpuMemory(
            total=gpu.total_bytes,
            weights=per_gpu,
            kv=kv,
            overhead=overhead,
            share=fraction,
            fraction=fraction,
            kv_limit=kv,
            outside_claim="CUDA graphs",
        )
        return MemoryBudget(
            memory,
            weights,
            kv_bytes_per_token(facts, request.tp, element),
            block_tokens=BLOCK_TOKENS,
            startup=tuple(_startup_problems(request, fraction)),
        )


def _startup_problems(request: MemoryRequest, fraction: float) -> list[str]:
    gpu = request.gpu
    requested = gpu.total_bytes * fraction
    free = gpu.available_bytes - CUDA_CONTEXT
    if requested <= free:
        return []
    return [
        f"vLLM needs {fraction} × {gpu.total_bytes / GIB:.1f} GiB = {requested / GIB:.1f} GiB free at "
        f"startup but {gpu.describe()} has about {free / GIB:.1f} GiB after its CUDA context"
    ]


def peak_activation(facts: ModelFacts, tp: int) -> int:
    """The profile run's peak: per batched token the MLP's gate+up output and a few hidden-sized
    buffers, plus fp32 logits of the sampler's dummy batch."""
    moe = facts.moe
    mlp = facts.intermediate_size
    if moe is not None:
        mlp = max(mlp, moe.experts_per_token * moe.intermediate_size + moe.shared_intermediate_size)
    per_token = (2 * mlp // tp + 4 * facts.hidden_size) * ACTIVATION_BYTES
    return MAX_BATCHED_TOKENS * per_token + MAX_SEQS * facts.vocab_size * LOGIT_BYTES
