"""Does a model fit: one service's settings at one TP size on given GPUs → memory, KV tokens, verdict.

This is the one evaluation the placement, the recommendation and `--explore-tp` all share.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from servestack.engines import Engine, EngineFlags, Unchecked, get_engine
from servestack.engines.memory import GpuMemory, MemoryRequest, MemoryRule, Weights
from servestack.engines.tp import TpProblem
from servestack.errors import PlanError
from servestack.gpus import GIB, Gpu
from servestack.modelinfo import ModelFacts
from servestack.plan.model import Verdict
from servestack.plan.tp import tp_problems
from servestack.stack import Service

# Below this many tokens a "reduced context" is no use: the service does not fit.
MIN_CONTEXT = 1024


@dataclass(frozen=True)
class FitRequest:
    """What of a service matters for memory: its engine, its model and the settings that change memory."""

    engine: str
    facts: ModelFacts
    context: int | None = None  # the stack's; None: the engine's default
    fraction: float | None = None  # the stack's; None: the engine's default
    dtype: str = "auto"
    quantization: str | None = None
    kv_cache_dtype: str = "auto"
    args: tuple[str, ...] = ()  # the service's extra engine flags
    env: Mapping[str, str] = field(default_factory=dict)  # the service's extra environment
    version: str | None = None  # the engine's version when known; None: its newest behaviour

    @classmethod
    def of(cls, service: Service, facts: ModelFacts, version: str | None = None) -> FitRequest:
        return cls(
            engine=service.engine,
            facts=facts,
            context=service.context_length,
            fraction=service.memory_fraction,
            dtype=service.dtype,
            quantization=service.quantization,
            kv_cache_dtype=service.kv_cache_dtype,
            args=tuple(service.args),
            env=dict(service.env),
            version=version,
        )

    @property
    def adapter(self) -> Engine:
        return get_engine(self.engine)

    @property
    def flags(self) -> EngineFlags:
        return self.adapter.flags

    @property
    def rule(self) -> MemoryRule:
        memory = self.adapter.memory
        if isinstance(memory, Unchecked):
            raise PlanError(f"internal: {self.engine} has no memory rule to fit with")
        return memory

    @property
    def wanted_context(self) -> int:
        return self.context or self.rule.default_context(self.facts, self.args)

    def memory_request(self, gpus: Sequence[Gpu], tp: int, context: int) -> MemoryRequest:
        return MemoryRequest(
            facts=self.facts,
            gpus=tuple(gpus),
            tp=tp,
            context=context,
            fraction=self.fraction,
            dtype=self.dtype,
            quantization=self.quantization,
            kv_cache_dtype=self.kv_cache_dtype,
            args=self.args,
            env=self.env,
            version=self.version,
        )


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
    memory_request = request.memory_request(gpus, tp, context)
    budget = request.rule.budget(memory_request)
    smallest = memory_request.gpu
    memory = dataclasses.replace(budget.memory, in_use=smallest.total_bytes - smallest.available_bytes)
    cap = budget.token_cap
    kv_tokens = _whole_blocks(memory.kv, budget.kv_per_token, budget.block_tokens, cap)
    fit = Fit(
        tp=tp,
        gpus=tuple(gpus),
        verdict=Verdict.FITS,
        reason="",
        memory=memory,
        weights=budget.weights,
        kv_per_token=budget.kv_per_token,
        context=context,
        kv_tokens=kv_tokens,
        max_context=_whole_blocks(memory.kv_limit, budget.kv_per_token, budget.block_tokens, cap),
        startup=budget.startup,
    )
    verdict, reason = _verdict(fit, smallest)
    sequences = kv_tokens // context if verdict is Verdict.FITS else 0
    return dataclasses.replace(fit, verdict=verdict, reason=reason, sequences=sequences)


def _whole_blocks(kv_bytes: int, per_token: int, block: int, cap: int | None) -> int:
    """Tokens in whole blocks of KV, at most `cap` (a limit set by the engine's flags)."""
    tokens = max(0, kv_bytes) // per_token // block * block
    return tokens if cap is None else min(tokens, cap)


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
