"""The contract of a per-engine memory rule, and the overheads every CUDA engine shares.

A rule answers, for one replica of a service (its TP group, or the GPUs llama.cpp splits layers over):
given the model, the GPUs, the context, the memory fraction and the engine's own flags, how much the
engine puts on each GPU (weights, KV cache, everything else) and how many KV tokens that holds. Each
engine declares its rule on its adapter (`memory`); the planner only compares the answer with the GPUs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from servestack.engines.memory.weights import Weights
from servestack.gpus import GIB, Gpu
from servestack.modelinfo import ModelFacts

# Memory a process loses before loading weights: CUDA context, torch and cuBLAS workspaces.
# Measured: SGLang on an H100 (79.65 GiB) logs "Load weight begin. avail mem=78.81 GB" (§2.4).
CUDA_CONTEXT = int(0.85 * GIB)
# NCCL communicators and custom all-reduce buffers with TP > 1 (an assumption: logs show 0.3–1 GiB).
NCCL_BUFFERS = int(0.5 * GIB)


def startup_overhead(tp: int) -> int:
    """What a TP rank holds before its weights: CUDA context, plus NCCL buffers when TP > 1."""
    return CUDA_CONTEXT + (NCCL_BUFFERS if tp > 1 else 0)


@dataclass(frozen=True)
class GpuMemory:
    """How one service uses each of its GPUs (every GPU of a TP group holds the same), in bytes.

    `kv` is the KV cache the engine will allocate (≤ 0: none fits); `kv_limit` the most KV these settings
    allow (engines that size the pool from a fraction allocate all of it, so the two are equal; llama.cpp
    allocates only its context). `overhead` is what else the engine holds within its claim: CUDA context,
    NCCL buffers, activations or compute buffers as each engine sizes them. `share` is the part of the GPU
    the service claims, compared with other services on the same GPU. What it does not claim is `free`,
    apart from `in_use` (held by other processes when planned); `outside_claim` names what the engine still
    allocates from that free part as it runs (SGLang: activations and CUDA graphs).
    """

    total: int
    weights: int
    kv: int
    overhead: int
    share: float
    fraction: float | None = None
    kv_limit: int = 0
    in_use: int = 0
    outside_claim: str = ""

    @property
    def claimed(self) -> int:
        return self.weights + max(self.kv, 0) + self.overhead

    @property
    def free(self) -> int:
        """What is left of the GPU (negative: the claim is that much more than the GPU has)."""
        return self.total - self.in_use - self.claimed


@dataclass(frozen=True)
class MemoryRequest:
    """One replica of a service as the planner sees it."""

    facts: ModelFacts
    gpus: tuple[Gpu, ...]  # the TP group, or the GPUs llama.cpp splits layers over
    tp: int
    context: int  # tokens of one full-context sequence
    fraction: float | None = None  # the user's memory fraction, None: the engine's default
    dtype: str = "auto"
    quantization: str | None = None
    kv_cache_dtype: str = "auto"
    args: tuple[str, ...] = ()  # the service's extra engine flags: a rule reads those that change memory
    env: Mapping[str, str] = field(default_factory=dict)  # the service's extra environment (VLLM_USE_V1=0)
    version: str | None = None  # the engine's version; None: the newest behaviour the rule knows

    @property
    def gpu(self) -> Gpu:
        """The GPU with the least memory available: TP ranks and layer splits are bound by it."""
        return min(self.gpus, key=lambda g: g.available_bytes)


@dataclass(frozen=True)
class MemoryBudget:
    """A rule's answer for one GPU of the replica (the one with the least memory)."""

    memory: GpuMemory
    weights: Weights  # the whole model as the engine holds it
    kv_per_token: int  # KV bytes one token takes on this GPU
    block_tokens: int = 1  # the pool is allocated in blocks of this many tokens
    token_cap: int | None = None  # a limit the engine's flags put on the pool (SGLang --max-total-tokens)
    startup: tuple[str, ...] = ()  # why the engine refuses to start whatever the KV (empty: it starts)


class MemoryRule(Protocol):
    @property
    def strict_context(self) -> bool:
        """Whether the engine refuses a context longer than the model's positions."""
        ...

    @property
    def caps_context(self) -> bool:
        """Whether a pool too small for one full-context sequence caps requests instead of refusing to start."""
        ...

    @property
    def start_order(self) -> str | None:
        """Why the order in which services sharing a GPU start changes what this engine gets (None: it does not)."""
        ...

    def default_context(self, facts: ModelFacts, args: Sequence[str] = ()) -> int:
        """The context the engine uses when the stack gives none."""
        ...

    def default_fraction(self, gpu: Gpu, tp: int, facts: ModelFacts | None = None) -> float | None:
        """The memory fraction the engine uses when the stack gives none (None: it has no fraction)."""
        ...

    def budget(self, request: MemoryRequest) -> MemoryBudget:
        """Weights, KV and overhead on the replica's smallest GPU."""
        ...
