"""SGLang's memory rule (`profile_max_num_token`, reference/engines.md §2.3).

    pre   = memory free after torch.distributed init (before weights)
    kv    = pre × mem_fraction_static − weights/tp        (= post-load free − pre × (1 − mfs))
    tokens = kv // bytes per token

`mem_fraction_static` is a fraction of the memory free at startup that covers weights and the KV pool;
`(1 − mfs) × pre` is left outside: SGLang allocates its activations and CUDA graphs from it, and with a
fraction set low (seed 000: 0.6) the rest is free for other services. Its default (server_args.py,
mid/late 2025) reserves memory by GPU size and TP: `mfs = round((total − reserved) / total, 3)`.
"""

from __future__ import annotations

from collections.abc import Sequence

from servestack.engines.memory.base import GpuMemory, MemoryBudget, MemoryRequest, startup_overhead
from servestack.engines.memory.kvcache import kv_bytes_per_token, kv_element_bytes
from servestack.engines.memory.weights import model_weights, weight_dtype
from servestack.gpus import GIB, Gpu
from servestack.modelinfo import ModelFacts

MIB = 2**20

# (GPU total below this many GiB, reserved GiB at TP 1 before the per-rank term, GiB per TP rank)
# from server_args.py: <20 and <35 GiB (2.8 + tp/10), <90 GiB A100/H100 (9.5 + tp/2),
# <100 GiB H20 and <160 GiB H200 (12 + tp/2), larger (B200, MI300) 32 flat.
RESERVED_BY_SIZE: tuple[tuple[float, float, float], ...] = (
    (35, 2.8, 0.1),
    (90, 9.5, 0.5),
    (160, 12.0, 0.5),
    (float("inf"), 32.0, 0.0),
)


class SglangMemory:
    strict_context = True
    start_order = (
        "SGLang's mem_fraction_static is a fraction of the memory free when it starts: started after another "
        "service it gets a smaller KV cache than planned here"
    )

    def default_context(self, facts: ModelFacts, args: Sequence[str] = ()) -> int:
        return facts.max_context or 4096

    def default_fraction(self, gpu: Gpu, tp: int, facts: ModelFacts | None = None) -> float | None:
        return default_mem_fraction_static(gpu.total_bytes, tp)

    def budget(self, request: MemoryRequest) -> MemoryBudget:
        facts = request.facts
        gpu = request.gpu
        fraction = request.fraction or default_mem_fraction_static(gpu.total_bytes, request.tp)
        weights = model_weights(facts, dtype=request.dtype, quantization=request.quantization)
        element = kv_element_bytes(request.kv_cache_dtype, weight_dtype(facts, request.dtype))
        per_gpu = -(-weights.bytes // request.tp)
        before = startup_overhead(request.tp)
        pre = gpu.available_bytes - before
        kv = int(pre * fraction) - per_gpu
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
        return MemoryBudget(memory, weights, kv_bytes_per_token(facts, request.tp, element))


def default_mem_fraction_static(total_bytes: int, tp: int) -> float:
    """SGLang's automatic `mem_fraction_static` for a GPU of `total_bytes` at TP `tp`."""
    total_mib = total_bytes / MIB
    for below_gib, base, per_rank in RESERVED_BY_SIZE:
        if total_bytes / GIB < below_gib:
            reserved_mib = (base + per_rank * tp) * 1024
            return round((total_mib - reserved_mib) / total_mib, 3)
    raise AssertionError("unreachable: the last row has no upper bound")
