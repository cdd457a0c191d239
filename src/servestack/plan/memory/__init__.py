"""Per-engine memory rules: how each engine turns a GPU, weights and a fraction into a KV-cache budget."""

from servestack.plan.memory.base import CUDA_CONTEXT, EngineFlags, MemoryRequest, MemoryRule
from servestack.plan.memory.llamacpp import LlamaCppMemory
from servestack.plan.memory.mistralrs import MistralRsMemory
from servestack.plan.memory.sglang import SglangMemory, default_mem_fraction_static
from servestack.plan.memory.vllm import VllmMemory

RULES: dict[str, MemoryRule] = {
    "vllm": VllmMemory(),
    "sglang": SglangMemory(),
    "llamacpp": LlamaCppMemory(),
    "mistralrs": MistralRsMemory(),
}

# Engines that run one process over exactly `tp` GPUs (llama.cpp splits layers, the simulator uses none).
TENSOR_PARALLEL_ENGINES = frozenset({"vllm", "sglang", "mistralrs"})

__all__ = [
    "CUDA_CONTEXT",
    "RULES",
    "TENSOR_PARALLEL_ENGINES",
    "EngineFlags",
    "MemoryRequest",
    "MemoryRule",
    "default_mem_fraction_static",
]
