"""Model-family knowledge as data: which config keys name a fact, and what a family's config leaves unsaid.

Adding a family means adding rows here, never an `if model_type == ...` in the code that reads configs.
"""

from __future__ import annotations

from types import MappingProxyType

# Fact → the config keys that carry it, first match wins (HF names first, then older/other spellings).
CONFIG_KEYS: MappingProxyType[str, tuple[str, ...]] = MappingProxyType(
    {
        "layers": ("num_hidden_layers", "n_layer", "num_layers"),
        "hidden_size": ("hidden_size", "n_embd", "d_model"),
        "attention_heads": ("num_attention_heads", "n_head"),
        "kv_heads": ("num_key_value_heads", "multi_query_group_num", "n_head_kv"),
        "head_dim": ("head_dim", "kv_channels"),
        "vocab_size": ("vocab_size", "padded_vocab_size"),
        "intermediate_size": ("intermediate_size", "ffn_hidden_size", "n_inner"),
        "max_context": ("max_position_embeddings", "seq_length", "n_positions", "max_sequence_length"),
        "dtype": ("torch_dtype", "dtype"),
        "experts": ("n_routed_experts", "num_local_experts", "num_experts"),
        "experts_per_token": ("num_experts_per_tok", "moe_topk", "num_experts_per_token"),
        "moe_intermediate_size": ("moe_intermediate_size",),
        "shared_experts": ("n_shared_experts",),
        "shared_expert_intermediate_size": ("shared_expert_intermediate_size",),
        "first_dense_layers": ("first_k_dense_replace",),
        "moe_layer_freq": ("moe_layer_freq", "decoder_sparse_step"),
        "mtp_layers": ("num_nextn_predict_layers",),
        "qkv_bias": ("attention_bias", "qkv_bias"),
        "qk_norm": ("use_qk_norm",),
    }
)


# What a family's config.json does not say but its modelling code does (by `model_type`).
FAMILY_TRAITS: MappingProxyType[str, MappingProxyType[str, bool]] = MappingProxyType(
    {
        # Qwen2 attention has biased q/k/v projections; the config has no key for it.
        "qwen2": MappingProxyType({"qkv_bias": True}),
        "qwen2_moe": MappingProxyType({"qkv_bias": True}),
        "qwen2_vl": MappingProxyType({"qkv_bias": True}),
        "qwen2_5_vl": MappingProxyType({"qkv_bias": True}),
        # Qwen3 normalises q and k per head (q_norm, k_norm).
        "qwen3": MappingProxyType({"qk_norm": True}),
        "qwen3_moe": MappingProxyType({"qk_norm": True}),
        # The router carries an `e_score_correction_bias` per expert.
        "glm4_moe": MappingProxyType({"router_bias": True}),
        "deepseek_v3": MappingProxyType({"router_bias": True}),
    }
)

# Families whose layers alternate local (sliding-window) and global attention: one global layer in every n
# (HF `sliding_window_pattern`; llama.cpp's `hparams.set_swa_pattern` in `src/llama-model.cpp`).
SWA_PATTERNS: MappingProxyType[str, int] = MappingProxyType({"gemma2": 2, "gemma3": 6, "gemma3_text": 6, "cohere2": 4})

# HF `quantization_config.quant_method` spellings → the name the planner and the engines use.
QUANT_METHODS: MappingProxyType[str, str] = MappingProxyType(
    {
        "compressed_tensors": "compressed-tensors",
        "autoround": "auto-round",
        "auto_round": "auto-round",
    }
)

# A config nests the language model under one of these keys in multimodal checkpoints.
TEXT_CONFIG_KEYS = ("text_config", "language_config", "llm_config")
