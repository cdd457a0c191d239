"""Parameter counts computed from a model's shape: dense, MoE, MLA, tied embeddings, a vision tower.

The formulas follow the HF modelling code (Llama/Mistral/Qwen2 attention and SwiGLU MLP, DeepSeek-V2
MLA, Mixtral/DeepSeek/GLM MoE). They reproduce the published totals of every model in the
reference configs (`_computed.total_params`), which the tests check.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from servestack.modelinfo.facts import ModelFacts

SWIGLU_MATRICES = 3  # gate, up, down


@dataclass(frozen=True)
class ParamGroup:
    """The parameters of one module, named as HF checkpoints name it (`model.layers.3.self_attn.q_proj`).

    `kind` says what it is: `linear` (what quantisation methods quantise), `embedding`, `lm_head`,
    `norm`, `router` (MoE gates) or `vision` (the whole vision tower). `replicated` modules are held whole
    by every tensor-parallel rank (norms, routers, MLA's down-projections); the rest is split by TP.
    """

    name: str
    parameters: int
    kind: str
    layer: int | None = None
    replicated: bool = False


def parameter_groups(facts: ModelFacts) -> list[ParamGroup]:
    """Every module with weights, in checkpoint order (MTP layers excluded)."""
    h = facts.hidden_size
    groups = [ParamGroup("model.embed_tokens", facts.vocab_size * h, "embedding")]
    sparse = set(moe_layers(facts))
    for i in range(facts.layers):
        prefix = f"model.layers.{i}"
        groups += _attention_groups(facts, f"{prefix}.self_attn", i)
        groups += _mlp_groups(facts, f"{prefix}.mlp", i, i in sparse)
        groups += [ParamGroup(f"{prefix}.{norm}", h, "norm", i, True) for norm in LAYER_NORMS]
    groups.append(ParamGroup("model.norm", h, "norm", replicated=True))
    if not facts.tie_word_embeddings:
        groups.append(ParamGroup("lm_head", facts.vocab_size * h, "lm_head"))
    if facts.vision_parameters:
        groups.append(ParamGroup("visual", facts.vision_parameters, "vision"))
    return groups


LAYER_NORMS = ("input_layernorm", "post_attention_layernorm")


def count_parameters(facts: ModelFacts) -> int:
    """Every parameter of the checkpoint's language model (MTP layers excluded) plus its vision tower."""
    return sum(group.parameters for group in parameter_groups(facts))


def count_active_parameters(facts: ModelFacts) -> int:
    """Parameters one token passes through: only `experts_per_token` of the routed experts."""
    total = count_parameters(facts)
    if facts.moe is None:
        return total
    idle = (facts.moe.experts - facts.moe.experts_per_token) * _expert_parameters(facts)
    return total - idle * len(moe_layers(facts))


def moe_layers(facts: ModelFacts) -> list[int]:
    """Indices of the layers whose MLP is a mixture of experts."""
    moe = facts.moe
    if moe is None:
        return []
    first = moe.first_dense_layers
    return [i for i in range(first, facts.layers) if (i - first) % moe.layer_freq == 0]


def _attention_groups(facts: ModelFacts, prefix: str, layer: int) -> list[ParamGroup]:
    if facts.mla is not None:
        return _mla_groups(facts, prefix, layer)
    h, heads, kv, d = facts.hidden_size, facts.attention_heads, facts.kv_heads, facts.head_dim
    bias = facts.qkv_bias
    groups = [
        ParamGroup(f"{prefix}.q_proj", h * heads * d + (heads * d if bias else 0), "linear", layer),
        ParamGroup(f"{prefix}.k_proj", h * kv * d + (kv * d if bias else 0), "linear", layer),
        ParamGroup(f"{prefix}.v_proj", h * kv * d + (kv * d if bias else 0), "linear", layer),
        ParamGroup(f"{prefix}.o_proj", heads * d * h, "linear", layer),
    ]
    if facts.qk_norm:
        groups += [ParamGroup(f"{prefix}.{n}", d, "norm", layer, True) for n in ("q_norm", "k_norm")]
    return groups


def _mla_groups(facts: ModelFacts, prefix: str, layer: int) -> list[ParamGroup]:
    """DeepSeek-V2 MLA: low-rank q (when q_lora_rank) and kv projections; the down-projections are replicated."""
    mla = facts.mla
    assert mla is not None
    h, heads = facts.hidden_size, facts.attention_heads
    q_head = mla.qk_nope_head_dim + mla.qk_rope_head_dim
    if mla.q_lora_rank:
        q = [
            ParamGroup(f"{prefix}.q_a_proj", h * mla.q_lora_rank, "linear", layer, True),
            ParamGroup(f"{prefix}.q_a_layernorm", mla.q_lora_rank, "norm", layer, True),
            ParamGroup(f"{prefix}.q_b_proj", mla.q_lora_rank * heads * q_head, "linear", layer),
        ]
    else:
        q = [ParamGroup(f"{prefix}.q_proj", h * heads * q_head, "linear", layer)]
    return [
        *q,
        ParamGroup(
            f"{prefix}.kv_a_proj_with_mqa", h * (mla.kv_lora_rank + mla.qk_rope_head_dim), "linear", layer, True
        ),
        ParamGroup(f"{prefix}.kv_a_layernorm", mla.kv_lora_rank, "norm", layer, True),
        ParamGroup(
            f"{prefix}.kv_b_proj", mla.kv_lora_rank * heads * (mla.qk_nope_head_dim + mla.v_head_dim), "linear", layer
        ),
        ParamGroup(f"{prefix}.o_proj", heads * mla.v_head_dim * h, "linear", layer),
    ]


def _mlp_groups(facts: ModelFacts, prefix: str, layer: int, sparse: bool) -> list[ParamGroup]:
    h = facts.hidden_size
    moe = facts.moe
    if moe is None or not sparse:
        return _swiglu(prefix, h, facts.intermediate_size, layer)
    groups = [ParamGroup(f"{prefix}.experts", moe.experts * _expert_parameters(facts), "linear", layer)]
    if moe.shared_intermediate_size:
        groups += _swiglu(f"{prefix}.shared_experts", h, moe.shared_intermediate_size, layer)
    router = h * moe.experts + (moe.experts if facts.router_bias else 0)
    return [*groups, ParamGroup(f"{prefix}.gate", router, "router", layer, True)]


def _swiglu(prefix: str, hidden: int, width: int, layer: int) -> list[ParamGroup]:
    return [
        ParamGroup(f"{prefix}.{name}", hidden * width, "linear", layer)
        for name in ("gate_proj", "up_proj", "down_proj")
    ]


def _expert_parameters(facts: ModelFacts) -> int:
    assert facts.moe is not None
    return SWIGLU_MATRICES * facts.hidden_size * facts.moe.intermediate_size


def count_vision_parameters(vision: Mapping[str, Any], text_hidden_size: int) -> int:
    """A ViT tower: patch embedding, pre-norm blocks (LayerNorm with bias, biased linears) and,
    when the config has `spatial_merge_size`, the Qwen2-VL patch merger into the text width."""
    depth = int(vision.get("depth") or vision.get("num_hidden_layers") or 0)
    width = int(vision.get("embed_dim") or vision.get("hidden_size") or 0)
    if not depth or not width:
        return 0
    mlp = int(vision.get("intermediate_size") or width * float(vision.get("mlp_ratio", 4)))
    patch = int(vision.get("patch_size", 14))
    channels = int(vision.get("in_chans") or vision.get("num_channels") or 3)
    temporal = int(vision.get("temporal_patch_size", 1))
    block = 4 * width + (width * 3 * width + 3 * width) + (width * width + width) + 2 * width * mlp + mlp + width
    patch_embed = channels * temporal * patch * patch * width
    merge = int(vision.get("spatial_merge_size", 0))
    merger = 0
    if merge:
        merged = width * merge * merge
        merger = 2 * width + merged * merged + merged + merged * text_hidden_size + text_hidden_size
    return depth * block + patch_embed + merger
