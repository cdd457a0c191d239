"""KV-cache bytes per token on one GPU (reference/engines.md §2.2).

Standard attention: layers × 2 (K and V) × KV heads on this GPU × head dim × element bytes, where a
GPU holds `max(1, kv_heads // tp)` heads (KV is replicated when TP exceeds the KV heads). MLA
(DeepSeek V2/V3): layers × (kv_lora_rank + rope dim) × element bytes, one latent replicated on every
rank, so not divided by TP. Sliding-window layers are counted at full length (an upper bound).
"""

from __future__ import annotations

import math

from servestack.modelinfo import ModelFacts

# KV-cache element bytes by dtype; q8_0 / q4_0 are llama.cpp block formats (34 and 18 bytes per 32).
KV_DTYPE_BYTES = {
    "bfloat16": 2.0,
    "float16": 2.0,
    "float32": 4.0,
    "fp8": 1.0,
    "fp8_e4m3": 1.0,
    "fp8_e5m2": 1.0,
    "q8_0": 1.0625,
    "q4_0": 0.5625,
}


def kv_element_bytes(kv_cache_dtype: str, weight_dtype: str) -> float:
    """`auto` stores the KV cache in the weight dtype."""
    name = weight_dtype if kv_cache_dtype == "auto" else kv_cache_dtype
    return KV_DTYPE_BYTES.get(name, 2.0)


def kv_bytes_per_token(facts: ModelFacts, tp: int, element_bytes: float) -> int:
    """Bytes one token of context takes in the KV cache of one GPU of a TP group."""
    if facts.mla is not None:
        return math.ceil(facts.layers * facts.mla.latent_dim * element_bytes)
    heads_per_gpu = max(1, facts.kv_heads // tp)
    return math.ceil(facts.layers * 2 * heads_per_gpu * facts.head_dim * element_bytes)
