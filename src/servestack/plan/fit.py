"""Does a model fit: one service's settings at one TP size on given GPUs → memory, KV tokens, verdict.

This is the one evaluation the placement, the recommendation and `--explore-tp` all share.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from servestack.gpus import GIB, Gpu
from servestack.modelinfo import ModelFacts
from servestack.plan.kvcache import kv_bytes_per_token, kv_element_bytes
from servestack.plan.memory import TENSOR_PARALLEL_ENGINES, MemoryRequest, MemoryRule
from servestack.plan.model import GpuMemory, Verdict
from servestack.plan.tp import TpProblem, tp_problems
from servestack.plan.weights import Weights, model_weights, weight_dtype
from servestack.stack import Service

# Below this many tokens a "reduced context" is no use: the service does not fit.
MIN_CONTEXT = 1024


@dataclass(frozen=True)
class FitRequest:
    """What of a service matters for memory, with the engine's rule."""

    engine: str
    rule: MemoryRule
    facts: ModelFacts
    context: int | None = None  # the stack's; None: the engine's default
    fraction: float | None = None  # the stack's; None: the engine's default
    dtype: str = "auto"
    quantization: str | None = None
    kv_cache_dtype: str = "auto"

    @classmethod
    def of(cls, service: Service, rule: MemoryRule, facts: ModelFacts) -> FitRequest:
        return cls(
            engine=service.engine,
            rule=rule,
            facts=facts,
            context=service.context_length,
            fraction=service.memory_fraction,
            dtype=service.dtype,
            quantization=service.quantization,
            kv_cache_dtype=service.kv_cache_dtype,
        )

    @property
    def wanted_context(self) -> int:
        return self.context or self.rule.default_context(self.facts)


@dataclass(frozen=True)
class Fit:
    tp: int
    gpus: tuple[Gpu, ...]
    verdict: Verdict
    reason: str
    problems: tuple[TpProblem, ...] = ()
    memory: GpuMemory | None = None
    weights: Weights | None = None
    kv_per_token: int = 0
    context: int = 0
    kv_tokens: int = 0  # what the engine allocates
    max_context: int = 0  # the longest single sequence the KV room holds
    sequences: int = 0  # full-context sequences that fit at once
    startup: tuple[str, ...] = ()

    @property
    def fits_shorter_context(self) -> bool:
        """Weights fit and some KV fits, only not a full sequence of the context asked for."""
        return self.verdict is Verdict.DOES_NOT_FIT and not self.startup and self.max_context >= MIN_CONTEXT


def evaluate(request: FitRequest, gpus: Sequence[Gpu], tp: int, *, context: int | None = None) -> Fit:
    """Evaluate `request` at TP `tp` on `gpus` (the TP group, or the GPUs llama.cpp splits layers over)."""
    problems = tuple(tp_problems(request.facts, tp, request.engine))
    if problems:
        return Fit(tp, tuple(gpus), Verdict.INVALID, "; ".join(p.reason for p in problems), problems=problems)
    context = context or request.wanted_context
    facts, rule = request.facts, request.rule
    weights = model_weights(facts, dtype=request.dtype, quantization=request.quantization)
    split, kv_per_token = _split(request, gpus, tp)
    smallest = min(gpus, key=lambda g: g.available_bytes)
    memory_request = MemoryRequest(smallest, tp, split, weights.bytes, kv_per_token, context, request.fraction, facts)
    memory = dataclasses.replace(rule.budget(memory_request), in_use=smallest.total_bytes - smallest.available_bytes)
    block = rule.block_tokens
    kv_tokens = max(0, memory.kv) // kv_per_token // block * block
    max_context = max(0, memory.kv_limit) // kv_per_token // block * block
    startup = tuple(rule.startup_problems(memory_request))
    fit = Fit(
        tp=tp,
        gpus=tuple(gpus),
        verdict=Verdict.FITS,
        reason="",
        memory=memory,
        weights=weights,
        kv_per_token=kv_per_token,
        context=context,
        kv_tokens=kv_tokens,
        max_context=max_context,
        startup=startup,
    )
    verdict, reason = _verdict(fit, smallest)
    sequences = kv_tokens // context if verdict is Verdict.FITS else 0
    return dataclasses.replace(fit, verdict=verdict, reason=reason, sequences=sequences)


def _split(request: FitRequest, gpus: Sequence[Gpu], tp: int) -> tuple[int, int]:
    """Over how many GPUs the weights are spread, and the KV bytes per token on each."""
    element = kv_element_bytes(request.kv_cache_dtype, weight_dtype(request.facts, request.dtype))
    if request.engine in TENSOR_PARALLEL_ENGINES:
        return tp, kv_bytes_per_token(request.facts, tp, element)
    # llama.cpp spreads whole layers, and their KV cache, over the GPUs listed.
    split = max(1, len(gpus))
    return split, -(-kv_bytes_per_token(request.facts, 1, element) // split)


def _verdict(fit: Fit, gpu: Gpu) -> tuple[Verdict, str]:
    memory = fit.memory
    assert memory is not None
    if memory.weights >= gpu.available_bytes:
        return Verdict.DOES_NOT_FIT, (
            f"weights take {gib(memory.weights)} per GPU at TP {fit.tp}; GPU {gpu.index} ({gpu.name}) has "
            f"{gib(gpu.available_bytes)}"
        )
    if fit.startup:
        return Verdict.DOES_NOT_FIT, fit.startup[0]
    if fit.max_context <= 0:
        budget = f" under memory fraction {memory.fraction}" if memory.fraction else ""
        return Verdict.DOES_NOT_FIT, (
            f"weights ({gib(memory.weights)}) and overhead ({gib(memory.overhead)}) per GPU leave no room for the "
            f"KV cache{budget}"
        )
    if fit.max_context < fit.context:
        return Verdict.DOES_NOT_FIT, (
            f"one {fit.context:,}-token sequence needs {gib(fit.context * fit.kv_per_token)} of KV cache per GPU; "
            f"{gib(max(memory.kv_limit, 0))} holds {fit.max_context:,} tokens"
        )
    sequences = fit.kv_tokens // fit.context
    return Verdict.FITS, f"{fit.kv_tokens:,} KV tokens: {sequences:,} full {fit.context:,}-token sequence(s) at once"


def gib(value: float) -> str:
    return f"{value / GIB:.1f} GiB"
