"""Facts from a HF `config.json` (a dict): shape, MoE, MLA, dtype, quantisation and the parameter count."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from servestack.errors import ModelInfoError
from servestack.modelinfo.facts import MLA, ModelFacts, MoE
from servestack.modelinfo.families import CONFIG_KEYS, FAMILY_TRAITS, SWA_PATTERNS, TEXT_CONFIG_KEYS
from servestack.modelinfo.params import count_parameters, count_vision_parameters
from servestack.modelinfo.quant import read_quantization

DTYPE_NAMES = {
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
    "float32": "float32",
    "fp32": "float32",
    "float": "float32",
}
REQUIRED = ("layers", "hidden_size", "attention_heads", "vocab_size")
YARN_TYPES = ("yarn",)


def read_config_file(path: Path) -> dict[str, Any]:
    """The parsed `config.json` at `path`."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelInfoError(f"{path}: no config.json") from None
    except (OSError, ValueError) as exc:
        raise ModelInfoError(f"{path}: cannot read the model config: {exc}") from None
    if not isinstance(data, dict):
        raise ModelInfoError(f"{path}: expected a JSON object")
    return data


def facts_from_config(config: Mapping[str, Any], *, model_id: str, source: str) -> ModelFacts:
    """Read a HF config (keys starting with `_` are ignored) into `ModelFacts`."""
    merged = _language_model_config(config)
    missing = [fact for fact in REQUIRED if _get(merged, fact) is None]
    if missing:
        keys = ", ".join(CONFIG_KEYS[m][0] for m in missing)
        raise ModelInfoError(f"{source}: the config of {model_id} has no {keys}")
    model_type = str(merged.get("model_type", ""))
    traits: Mapping[str, bool] = FAMILY_TRAITS.get(model_type, {})
    hidden, heads = int(_get(merged, "hidden_size")), int(_get(merged, "attention_heads"))
    quant_config = merged.get("quantization_config") or {}
    quant = read_quantization(quant_config) if quant_config else None
    vision = config.get("vision_config") or {}
    mla = _mla(merged)
    # MLA heads attend with nope + rope dims; the hidden size split by heads is meaningless there.
    head_dim = _get(merged, "head_dim") or (mla.qk_nope_head_dim + mla.qk_rope_head_dim if mla else hidden // heads)
    facts = ModelFacts(
        model_id=model_id,
        source=source,
        architecture=str((merged.get("architectures") or [model_type])[0]),
        model_type=model_type,
        layers=int(_get(merged, "layers")),
        hidden_size=hidden,
        attention_heads=heads,
        kv_heads=int(_get(merged, "kv_heads", heads)),
        head_dim=int(head_dim),
        vocab_size=int(_get(merged, "vocab_size")),
        intermediate_size=int(_get(merged, "intermediate_size", 4 * hidden)),
        parameters=0,
        dtype=DTYPE_NAMES.get(str(_get(merged, "dtype", "bfloat16")).lower(), "bfloat16"),
        max_context=_max_context(merged),
        quantization=quant.method if quant else None,
        quant=quant,
        weight_block_size=_block_size(quant_config.get("weight_block_size")),
        moe=_moe(merged),
        mla=mla,
        tie_word_embeddings=bool(merged.get("tie_word_embeddings", False)),
        sliding_window=_sliding_window(merged),
        sliding_window_layers=_sliding_layers(merged, int(_get(merged, "layers")), model_type),
        qkv_bias=bool(_get(merged, "qkv_bias", traits.get("qkv_bias", False))),
        qk_norm=bool(_get(merged, "qk_norm", traits.get("qk_norm", False))),
        router_bias=traits.get("router_bias", False),
        vision_heads=_int_or_none(vision.get("num_heads") or vision.get("num_attention_heads")),
        vision_parameters=count_vision_parameters(vision, hidden) if vision else 0,
        vision_layers=_int_or_none(vision.get("num_hidden_layers")),
        vision_width=_int_or_none(vision.get("hidden_size")),
        mtp_layers=int(_get(merged, "mtp_layers", 0) or 0),
    )
    return dataclasses.replace(facts, parameters=count_parameters(facts))


def _language_model_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config with a nested language-model config (multimodal checkpoints) lifted to the top."""
    clean = {k: v for k, v in config.items() if not k.startswith("_")}
    if _get(clean, "layers") is not None:
        return clean
    for key in TEXT_CONFIG_KEYS:
        nested = clean.get(key)
        if isinstance(nested, dict):
            return {**clean, **nested}
    return clean


def _get(config: Mapping[str, Any], fact: str, default: Any = None) -> Any:
    for key in CONFIG_KEYS[fact]:
        if config.get(key) is not None:
            return config[key]
    return default


def _int_or_none(value: Any) -> int | None:
    return int(value) if value is not None else None


def _max_context(config: Mapping[str, Any]) -> int | None:
    """The config's positions; YaRN scaling extends the original window by its factor (as vLLM derives it)."""
    positions = _int_or_none(_get(config, "max_context"))
    scaling = config.get("rope_scaling") or {}
    kind = scaling.get("rope_type", scaling.get("type"))
    original = scaling.get("original_max_position_embeddings")
    if kind in YARN_TYPES and original and scaling.get("factor"):
        return max(positions or 0, int(original * scaling["factor"]))
    return positions


def _moe(config: Mapping[str, Any]) -> MoE | None:
    experts = _get(config, "experts")
    if not experts:
        return None
    per_expert = int(_get(config, "moe_intermediate_size") or _get(config, "intermediate_size"))
    shared = _get(config, "shared_expert_intermediate_size")
    if shared is None:
        shared = int(_get(config, "shared_experts", 0) or 0) * per_expert
    return MoE(
        experts=int(experts),
        experts_per_token=int(_get(config, "experts_per_token", 2)),
        intermediate_size=per_expert,
        shared_intermediate_size=int(shared),
        first_dense_layers=int(_get(config, "first_dense_layers", 0) or 0),
        layer_freq=int(_get(config, "moe_layer_freq", 1) or 1),
    )


def _mla(config: Mapping[str, Any]) -> MLA | None:
    if not config.get("kv_lora_rank"):
        return None
    return MLA(
        kv_lora_rank=int(config["kv_lora_rank"]),
        qk_rope_head_dim=int(config.get("qk_rope_head_dim", 64)),
        qk_nope_head_dim=int(config.get("qk_nope_head_dim", 128)),
        v_head_dim=int(config.get("v_head_dim", 128)),
        q_lora_rank=_int_or_none(config.get("q_lora_rank")),
    )


def _sliding_window(config: Mapping[str, Any]) -> int | None:
    if config.get("use_sliding_window") is False:
        return None
    return _int_or_none(config.get("sliding_window"))


def _sliding_layers(config: Mapping[str, Any], layers: int, model_type: str) -> int:
    """How many layers use the sliding window: `layer_types`, else one global layer in every
    `sliding_window_pattern` (or the family's), else all of them (Mistral v0.1)."""
    if _sliding_window(config) is None:
        return 0
    types = config.get("layer_types")
    if isinstance(types, list):
        return sum(1 for kind in types if kind == "sliding_attention")
    pattern = config.get("sliding_window_pattern") or SWA_PATTERNS.get(model_type)
    return layers - layers // int(pattern) if pattern else layers


def _block_size(value: Any) -> tuple[int, int] | None:
    if isinstance(value, list | tuple) and len(value) == 2:
        return (int(value[0]), int(value[1]))
    return None
