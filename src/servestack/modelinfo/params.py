"""Parameter counts computed from a model's shape: dense, MoE, MLA, tied embeddings, a vision tower.

The formulas follow the HF modelling code (Llama/Mistral/Qwen2 attention and SwiGLU MLP, DeepSeek-V2
MLA, Mixtral/DeepSeek/GLM MoE). They reproduce the published totals of every model in the
reference configs (`_computed.total_params`), which the tests check.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from servestack.modelinfo.facts import ModelFacts

SWIGLU_MATRICES = 3  # gate, up, down


def count_parameters(facts: ModelFacts) -> int:
    """Every parameter of the checkpoint's language model (MTP layers excluded) plus its vision tower."""
    sparse = set(moe_layers(facts))
    layers = sum(_layer_parameters(facts, i in sparse) for i in range(facts.layers))
    return facts.embedding_parameters + layers + facts.hidden_size + facts.vision_parameters


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


def _layer_parameters(facts: ModelFacts, sparse: bool) -> int:
    norms = 2 * facts.hidden_size
    return _attention_parameters(facts) + _mlp_parameters(facts, sparse) + norms


def _attention_parameters(facts: ModelFacts) -> int:
    if facts.mla is not None:
        return _mla_parameters(facts)
    h, heads, kv, d = facts.hidden_size, facts.attention_heads, facts.kv_heads, facts.head_dim
    projections = h * heads * d + 2 * h * kv * d + heads * d * h
    bias = (heads + 2 * kv) * d if facts.qkv_bias else 0
    qk_norm = 2 * d if facts.qk_norm else 0
    return projections + bias + qk_norm


def _mla_parameters(facts: ModelFacts) -> int:
    mla = facts.mla
    assert mla is not None
    h, heads = facts.hidden_size, facts.attention_heads
    q_head = mla.qk_nope_head_dim + mla.qk_rope_head_dim
    if mla.q_lora_rank:
        q = h * mla.q_lora_rank + mla.q_lora_rank + mla.q_lora_rank * heads * q_head
    else:
        q = h * heads * q_head
    kv_down = h * (mla.kv_lora_rank + mla.qk_rope_head_dim) + mla.kv_lora_rank
    kv_up = mla.kv_lora_rank * heads * (mla.qk_nope_head_dim + mla.v_head_dim)
    out = heads * mla.v_head_dim * h
    return q + kv_down + kv_up + out


def _mlp_parameters(facts: ModelFacts, sparse: bool) -> int:
    moe = facts.moe
    if moe is None or not sparse:
        return SWIGLU_MATRICES * facts.hidden_size * facts.intermediate_size
    shared = SWIGLU_MATRICES * facts.hidden_size * moe.shared_intermediate_size
    router = facts.hidden_size * moe.experts + (moe.experts if facts.router_bias else 0)
    return moe.experts * _expert_parameters(facts) + shared + router


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
