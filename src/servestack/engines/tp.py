"""Tensor-parallel sharding rules as small pure functions, each failure with its reason.

Each engine lists the rules it enforces (`tp_rules` on its adapter); `plan/tp.py` applies them.

vLLM and SGLang share the sharding code (reference/engines.md §2.1): attention heads divide by TP; KV
heads divide by TP, or TP is a multiple of them (KV replicated); the vocabulary padded to a multiple
of 64 divides by TP; dense and per-expert MLP widths divide by TP (unless experts are spread with
expert parallelism); block-FP8 checkpoints also need each shard to be a whole number of 128-blocks; a
vision tower's heads divide by TP. mistral.rs documents the two head rules only; llama.cpp splits
layers and has no TP at all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from servestack.modelinfo import ModelFacts


@dataclass(frozen=True)
class TpProblem:
    rule: str  # attention-heads, kv-heads, vocab, intermediate, moe-intermediate, fp8-block, vision-heads, no-tp
    reason: str


TpRule = Callable[[ModelFacts, int], "TpProblem | None"]


def attention_heads(facts: ModelFacts, tp: int) -> TpProblem | None:
    if facts.attention_heads % tp == 0:
        return None
    return TpProblem("attention-heads", f"{facts.attention_heads} attention heads are not divisible by TP {tp}")


def kv_heads(facts: ModelFacts, tp: int) -> TpProblem | None:
    if facts.mla is not None:  # MLA caches one latent per token, replicated on every rank
        return None
    kv = facts.kv_heads
    if tp >= kv and tp % kv != 0:
        return TpProblem("kv-heads", f"TP {tp} is not a multiple of the {kv} KV heads (needed to replicate them)")
    if tp < kv and kv % tp != 0:
        return TpProblem("kv-heads", f"{kv} KV heads are not divisible by TP {tp}")
    return None


def vocab(facts: ModelFacts, tp: int) -> TpProblem | None:
    padded = facts.padded_vocab_size
    if padded % tp == 0:
        return None
    shown = f"{facts.vocab_size}" if padded == facts.vocab_size else f"{facts.vocab_size}, padded to {padded}"
    return TpProblem("vocab", f"the vocabulary ({shown}) is not divisible by TP {tp}")


def intermediate(facts: ModelFacts, tp: int) -> TpProblem | None:
    for label, width in dense_widths(facts):
        if width % tp:
            return TpProblem("intermediate", f"the {label} width {width} is not divisible by TP {tp}")
    return None


def moe_intermediate(facts: ModelFacts, tp: int) -> TpProblem | None:
    if facts.moe is None or facts.moe.intermediate_size % tp == 0:
        return None
    width = facts.moe.intermediate_size
    return TpProblem("moe-intermediate", f"the per-expert MLP width {width} is not divisible by TP {tp}")


def fp8_blocks(facts: ModelFacts, tp: int) -> TpProblem | None:
    if facts.weight_block_size is None:
        return None
    block = facts.weight_block_size[0]
    widths = [*dense_widths(facts)]
    if facts.moe is not None:
        widths.append(("per-expert MLP", facts.moe.intermediate_size))
    for label, width in widths:
        if width % tp == 0 and (width // tp) % block:
            return TpProblem(
                "fp8-block",
                f"the {label} shard {width}/{tp} = {width // tp} is not a multiple of the FP8 block size {block}",
            )
    return None


def vision_heads(facts: ModelFacts, tp: int) -> TpProblem | None:
    if not facts.vision_heads or facts.vision_heads % tp == 0:
        return None
    return TpProblem("vision-heads", f"the vision tower's {facts.vision_heads} heads are not divisible by TP {tp}")


def no_tp(facts: ModelFacts, tp: int) -> TpProblem | None:
    if tp == 1:
        return None
    return TpProblem("no-tp", "llama.cpp has no tensor parallelism; it splits layers across the GPUs listed")


def dense_widths(facts: ModelFacts) -> list[tuple[str, int]]:
    """The dense MLP widths TP splits: dense layers (all, or the leading ones of an MoE) and shared experts."""
    moe = facts.moe
    widths = []
    if moe is None or moe.first_dense_layers:
        widths.append(("MLP", facts.intermediate_size))
    if moe is not None and moe.shared_intermediate_size:
        widths.append(("shared-expert MLP", moe.shared_intermediate_size))
    return widths


# vLLM and SGLang share the sharding code (reference/engines.md §2.1).
SHARDED: tuple[TpRule, ...] = (
    attention_heads,
    kv_heads,
    vocab,
    intermediate,
    moe_intermediate,
    fp8_blocks,
    vision_heads,
)
# mistral.rs documents the two head rules only.
HEADS_ONLY: tuple[TpRule, ...] = (attention_heads, kv_heads)
# llama.cpp splits whole layers over the GPUs listed.
LAYER_SPLIT: tuple[TpRule, ...] = (no_tp,)
