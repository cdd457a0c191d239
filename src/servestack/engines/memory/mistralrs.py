"""mistral.rs's memory rule (PagedAttention, reference/engines.md §1.3 and §2.3).

TP runs over every visible GPU (NCCL); weights are split evenly. The PagedAttention pool
(`mistralrs-core/src/paged_attention/mod.rs` `calculate_cache_config`) is sized one of three ways:

- a fraction (`--pa-memory-fraction`, `mistralrs-server --pa-gpu-mem-usage`) of the GPU, less what is
  already in use after loading: `kv = fraction × total − (CUDA context + weights/tp + activations)`;
- a size in MB (`--pa-memory-mb`, `--pa-gpu-mem`);
- a context (`--pa-context-len`, `--pa-ctxt-len`): that many tokens.

With none given, `mistralrs serve` (v0.9+) takes 90% of the GPU; `mistralrs-server` (≤ v0.8) sizes the
pool for `--max-seq-len` tokens (4096 by default), a small pool until mistral.rs PR 2022 changed the
default. Blocks are 32 tokens on CUDA. The activation figure is an assumption (candle allocates on demand).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from servestack.engines.memory.base import GpuMemory, MemoryBudget, MemoryRequest, startup_overhead
from servestack.engines.memory.flags import number
from servestack.engines.memory.kvcache import kv_bytes_per_token, kv_element_bytes
from servestack.engines.memory.weights import model_weights, weight_dtype
from servestack.gpus import GIB, Gpu
from servestack.modelinfo import ModelFacts

DEFAULT_FRACTION = 0.9
DEFAULT_MAX_SEQ_LEN = 4096  # `--max-seq-len`
BLOCK_TOKENS = 32
ACTIVATIONS = int(0.5 * GIB)
MB = 2**20


@dataclass(frozen=True)
class PoolFlags:
    """How a mistral.rs generation names the pool's size (`serve`'s names, or the old server's)."""

    fraction: tuple[str, ...] = ("--pa-memory-fraction",)
    megabytes: tuple[str, ...] = ("--pa-memory-mb",)
    context: tuple[str, ...] = ("--pa-context-len",)


OLD_SERVER_FLAGS = PoolFlags(fraction=("--pa-gpu-mem-usage",), megabytes=("--pa-gpu-mem",), context=("--pa-ctxt-len",))


@dataclass(frozen=True)
class MistralRsMemory:
    """The rule; `pool_by_context`: with no size given the pool holds the context (`mistralrs-server`)."""

    flags: PoolFlags = PoolFlags()
    pool_by_context: bool = False
    strict_context = True
    caps_context = False
    start_order = None

    def default_context(self, facts: ModelFacts, args: Sequence[str] = ()) -> int:
        return int(number(args, "--max-seq-len") or DEFAULT_MAX_SEQ_LEN)

    def default_fraction(self, gpu: Gpu, tp: int, facts: ModelFacts | None = None) -> float | None:
        return None if self.pool_by_context else DEFAULT_FRACTION

    def budget(self, request: MemoryRequest) -> MemoryBudget:
        facts, gpu, args = request.facts, request.gpu, request.args
        weights = model_weights(facts, dtype=request.dtype, quantization=request.quantization)
        element = kv_element_bytes(request.kv_cache_dtype, weight_dtype(facts, request.dtype))
        kv_per_token = kv_bytes_per_token(facts, request.tp, element)
        per_gpu = weights.per_gpu(request.tp)
        overhead = startup_overhead(request.tp) + ACTIVATIONS
        fraction = request.fraction or number(args, *self.flags.fraction)
        megabytes = number(args, *self.flags.megabytes)
        tokens = number(args, *self.flags.context)
        room = gpu.available_bytes - per_gpu - overhead
        if fraction is None and megabytes is None and (tokens is not None or self.pool_by_context):
            kv = int(tokens or request.context) * kv_per_token
            share = (per_gpu + kv + overhead) / gpu.total_bytes
            memory = GpuMemory(gpu.total_bytes, per_gpu, kv, overhead, share, None, kv_limit=room)
        else:
            fraction = fraction or DEFAULT_FRACTION
            kv = int(megabytes * MB) if megabytes else int(gpu.total_bytes * fraction) - per_gpu - overhead
            memory = GpuMemory(gpu.total_bytes, per_gpu, kv, overhead, fraction, fraction, kv_limit=kv)
        return MemoryBudget(memory, weights, kv_per_token, block_tokens=BLOCK_TOKENS)
