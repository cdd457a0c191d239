"""The contract of a per-engine memory rule, and the overheads every CUDA engine shares.

A rule answers, for one GPU of a service: given the weights on it, the KV bytes per token and the
memory fraction, how much KV cache the engine will allocate and what else it holds (`GpuMemory`).
One module per engine implements it; `RULES` in `__init__` lists them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from servestack.gpus import GIB, Gpu
from servestack.modelinfo import ModelFacts
from servestack.plan.model import GpuMemory

# Memory a process loses before loading weights: CUDA context, torch and cuBLAS workspaces.
# Measured: SGLang on an H100 (79.65 GiB) logs "Load weight begin. avail mem=78.81 GB" (§2.4).
CUDA_CONTEXT = int(0.85 * GIB)
# NCCL communicators and custom all-reduce buffers with TP > 1 (an assumption: logs show 0.3–1 GiB).
NCCL_BUFFERS = int(0.5 * GIB)


def startup_overhead(tp: int) -> int:
    """What a TP rank holds before its weights: CUDA context, plus NCCL buffers when TP > 1."""
    return CUDA_CONTEXT + (NCCL_BUFFERS if tp > 1 else 0)


@dataclass(frozen=True)
class MemoryRequest:
    """One GPU of a service as the planner sees it."""

    gpu: Gpu  # the smallest GPU of the group (TP ranks size themselves by the smallest)
    tp: int  # tensor-parallel size (1 for llama.cpp)
    split: int  # GPUs the weights are spread over: TP, or the layer split of llama.cpp
    weights: int  # bytes of the whole model
    kv_per_token: int  # KV bytes per token on this GPU
    context: int  # tokens of one full-context sequence
    fraction: float | None  # the user's memory fraction, None: the rule's default
    facts: ModelFacts

    @property
    def weights_per_gpu(self) -> int:
        return -(-self.weights // self.split)


@dataclass(frozen=True)
class EngineFlags:
    """The engine's flags for what the planner decides (for explanations; adapters build the argv)."""

    tp: str | None
    context: str
    fraction: str | None


class MemoryRule(Protocol):
    engine: str
    flags: EngineFlags
    block_tokens: int  # the KV cache is allocated in blocks of this many tokens
    strict_context: bool  # refuses a context longer than the model's positions

    def default_context(self, facts: ModelFacts) -> int:
        """The context the engine uses when the stack gives none."""
        ...

    def default_fraction(self, gpu: Gpu, tp: int) -> float | None:
        """The memory fraction the engine uses when the stack gives none (None: it has no fraction)."""
        ...

    def budget(self, request: MemoryRequest) -> GpuMemory:
        """Weights, KV and overhead on one GPU of the service."""
        ...

    def startup_problems(self, request: MemoryRequest) -> list[str]:
        """Reasons the engine would refuse to start on this GPU regardless of the KV (empty: none)."""
        ...
