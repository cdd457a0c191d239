"""mistral.rs's memory rule (PagedAttention, reference/engines.md §1.3 and §2.3).

TP runs over every visible GPU (NCCL); weights are split evenly. The PagedAttention KV pool takes
`--pa-memory-fraction` of the GPU (default 0.9) minus what is already used after loading:

    kv = fraction × total − (CUDA context + weights/tp + activations)

Blocks are 32 tokens on CUDA. The activation figure is an assumption (candle allocates on demand).
"""

from __future__ import annotations

from collections.abc import Sequence

from servestack.engines.memory.base import GpuMemory, MemoryBudget, MemoryRequest, startup_overhead
from servestack.engines.memory.kvcache import kv_bytes_per_token, kv_element_bytes
from servestack.engines.memory.weights import model_weights, weight_dtype
from servestack.gpus import GIB, Gpu
from servestack.modelinfo import ModelFacts

DEFAULT_FRACTION = 0.9
BLOCK_TOKENS = 32
ACTIVATIONS = int(0.5 * GIB)


class MistralRsMemory:
    caps_context = False
    start_order = None
    strict_context = True

    def default_context(self, facts: ModelFacts, args: Sequence[str] = ()) -> int:
        return facts.max_context or 4096

    def default_fraction(self, gpu: Gpu, tp: int, facts: ModelFacts | None = None) -> float | None:
        return DEFAULT_FRACTION

    def budget(self, request: MemoryRequest) -> MemoryBudget:
        facts = request.facts
        gpu = request.gpu
        fraction = request.fraction or DEFAULT_FRACTION
        weights = model_weights(facts, dtype=request.dtype, quantization=request.quantization)
        element = kv_element_bytes(request.kv_cache_dtype, weight_dtype(facts, request.dtype))
        per_gpu = weights.per_gpu(request.tp)
        overhead = startup_overhead(request.tp) + ACTIVATIONS
        kv = int(gpu.total_bytes * fraction) - per_gpu - overhead
        memory = GpuMemory(
            total=gpu.total_bytes,
            weights=per_gpu,
            kv=kv,
            overhead=overhead,
            share=fraction,
            fraction=fraction,
            kv_limit=kv,
        )
        return MemoryBudget(memory, weights, kv_bytes_per_token(facts, request.tp, element), block_tokens=BLOCK_TOKENS)
