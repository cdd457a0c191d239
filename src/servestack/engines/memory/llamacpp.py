"""llama.cpp's memory rule (llama-cpp-python's server and llama-server, reference/engines.md §2.2–2.3).

There is no fraction: the GPUs hold the weights (the GGUF file, split by layers over the GPUs
listed), the KV cache for exactly `n_ctx` tokens and compute buffers. KV per token is
`layers × (K + V widths) × type size`, spread with the layers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from servestack.engines.memory.base import CUDA_CONTEXT, GpuMemory, MemoryBudget, MemoryRequest
from servestack.engines.memory.kvcache import kv_bytes_per_token, kv_element_bytes
from servestack.engines.memory.weights import model_weights, weight_dtype
from servestack.gpus import Gpu
from servestack.modelinfo import ModelFacts

UBATCH = 512  # n_ubatch: tokens per compute pass
F32 = 4


@dataclass(frozen=True)
class LlamaCppMemory:
    """The rule, with the default context of the front end (llama-cpp-python 2048; llama-server the model's)."""

    fixed_context: int | None  # None: the model's trained context
    start_order = None
    strict_context = False  # llama.cpp warns and runs past n_ctx_train

    def default_context(self, facts: ModelFacts, args: Sequence[str] = ()) -> int:
        return self.fixed_context or facts.max_context or 4096

    def default_fraction(self, gpu: Gpu, tp: int, facts: ModelFacts | None = None) -> float | None:
        return None

    def budget(self, request: MemoryRequest) -> MemoryBudget:
        facts = request.facts
        gpu = request.gpu
        split = max(1, len(request.gpus))
        weights = model_weights(facts, dtype=request.dtype, quantization=request.quantization)
        element = kv_element_bytes(request.kv_cache_dtype, weight_dtype(facts, request.dtype))
        kv_per_token = -(-kv_bytes_per_token(facts, 1, element) // split)
        per_gpu = -(-weights.bytes // split)
        overhead = CUDA_CONTEXT + compute_buffer(facts, request.context)
        room = gpu.available_bytes - per_gpu - overhead
        kv = kv_per_token * request.context
        memory = GpuMemory(
            total=gpu.total_bytes,
            weights=per_gpu,
            kv=kv,
            overhead=overhead,
            share=(per_gpu + kv + overhead) / gpu.total_bytes,
            fraction=None,
            kv_limit=room,
        )
        return MemoryBudget(memory, weights, kv_per_token)


def compute_buffer(facts: ModelFacts, context: int) -> int:
    """The largest compute buffer: fp32 logits of one micro-batch, and the attention scores of one
    layer for the micro-batch against the whole context (without flash attention)."""
    logits = UBATCH * facts.vocab_size * F32
    scores = UBATCH * context * facts.attention_heads * F32
    return logits + scores
