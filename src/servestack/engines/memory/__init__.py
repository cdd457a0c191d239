"""Per-engine memory rules: how each engine turns GPUs, a model and its flags into weights, KV cache and
overhead per GPU. Each engine's adapter declares its rule (`memory`); the planner applies it."""

from servestack.engines.memory.base import (
    CUDA_CONTEXT,
    GpuMemory,
    MemoryBudget,
    MemoryRequest,
    MemoryRule,
)
from servestack.engines.memory.kvcache import kv_bytes_per_token, kv_element_bytes
from servestack.engines.memory.weights import Weights, model_weights, weight_dtype

__all__ = [
    "CUDA_CONTEXT",
    "GpuMemory",
    "MemoryBudget",
    "MemoryRequest",
    "MemoryRule",
    "Weights",
    "kv_bytes_per_token",
    "kv_element_bytes",
    "model_weights",
    "weight_dtype",
]
