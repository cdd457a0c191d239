"""llama.cpp's memory rule (llama-cpp-python's server, reference/engines.md §2.2–2.3).

There is no fraction: the GPUs hold the weights (the GGUF file, split by layers over the GPUs
listed), the KV cache for exactly `n_ctx` tokens (one slot; llama-cpp-python's default n_ctx is 2048)
and compute buffers. KV per token is `layers × (K + V widths) × type size`, spread with the layers.
"""

from __future__ import annotations

from servestack.gpus import Gpu
from servestack.modelinfo import ModelFacts
from servestack.plan.memory.base import CUDA_CONTEXT, EngineFlags, MemoryRequest
from servestack.plan.model import GpuMemory

DEFAULT_CONTEXT = 2048  # llama-cpp-python `--n_ctx` default
UBATCH = 512  # n_ubatch: tokens per compute pass
F32 = 4


class LlamaCppMemory:
    engine = "llamacpp"
    flags = EngineFlags(tp=None, context="--n_ctx", fraction=None)
    block_tokens = 1
    strict_context = False  # llama.cpp warns and runs past n_ctx_train

    def default_context(self, facts: ModelFacts) -> int:
        return DEFAULT_CONTEXT

    def default_fraction(self, gpu: Gpu, tp: int) -> float | None:
        return None

    def budget(self, request: MemoryRequest) -> GpuMemory:
        total = request.gpu.total_bytes
        overhead = CUDA_CONTEXT + compute_buffer(request.facts, request.context)
        room = request.gpu.available_bytes - request.weights_per_gpu - overhead
        kv = request.kv_per_token * request.context
        return GpuMemory(
            total=total,
            weights=request.weights_per_gpu,
            kv=kv,
            overhead=overhead,
            share=(request.weights_per_gpu + kv + overhead) / total,
            fraction=None,
            kv_limit=room,
        )

    def startup_problems(self, request: MemoryRequest) -> list[str]:
        return []


def compute_buffer(facts: ModelFacts, context: int) -> int:
    """The largest compute buffer: fp32 logits of one micro-batch, and the attention scores of one
    layer for the micro-batch against the whole context (without flash attention)."""
    logits = UBATCH * facts.vocab_size * F32
    scores = UBATCH * context * facts.attention_heads * F32
    return logits + scores
