"""mistral.rs's memory rule (PagedAttention, reference/engines.md §1.3 and §2.3).

TP runs over every visible GPU (NCCL); weights are split evenly. The PagedAttention KV pool takes
`--pa-memory-fraction` of the GPU (default 0.9) minus what is already used after loading:

    kv = fraction × total − (CUDA context + weights/tp + activations)

Blocks are 32 tokens on CUDA. The activation figure is an assumption (candle allocates on demand).
"""

from __future__ import annotations

from servestack.gpus import GIB, Gpu
from servestack.modelinfo import ModelFacts
from servestack.plan.memory.base import EngineFlags, MemoryRequest, startup_overhead
from servestack.plan.model import GpuMemory

DEFAULT_FRACTION = 0.9
ACTIVATIONS = int(0.5 * GIB)


class MistralRsMemory:
    engine = "mistralrs"
    flags = EngineFlags(tp=None, context="--max-seq-len", fraction="--pa-memory-fraction")
    block_tokens = 32
    strict_context = True

    def default_context(self, facts: ModelFacts) -> int:
        return facts.max_context or 4096

    def default_fraction(self, gpu: Gpu, tp: int) -> float | None:
        return DEFAULT_FRACTION

    def budget(self, request: MemoryRequest) -> GpuMemory:
        fraction = request.fraction or DEFAULT_FRACTION
        total = request.gpu.total_bytes
        overhead = startup_overhead(request.tp) + ACTIVATIONS
        kv = int(total * fraction) - request.weights_per_gpu - overhead
        return GpuMemory(
            total=total,
            weights=request.weights_per_gpu,
            kv=kv,
            overhead=overhead,
            share=fraction,
            fraction=fraction,
            kv_limit=kv,
        )

    def startup_problems(self, request: MemoryRequest) -> list[str]:
        return []
