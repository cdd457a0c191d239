"""Quantisation: a checkpoint's `quantization_config` read, and the bits each quantised weight takes.

Every method the engines accept (vLLM's and SGLang's `--quantization` choices, the HF quantizers'
`quant_method`) is a row of `METHODS`: its weight bits, how many weights share one scale, and what it
quantises. Bits are stored bits, scales and zero points included: AutoAWQ/GPTQ int4 in groups of 128
with a 16-bit scale and a 4-bit zero point is 4 + 20/128 bits; bitsandbytes NF4 keeps a float32 absmax
per 64 weights (4.5 bits), or an 8-bit one plus a float32 per 256 blocks when double-quantised (4.127);
MXFP4 an 8-bit scale per 32 (4.25); NVFP4 an FP8 scale per 16 (4.5). What a method leaves unquantised
(embeddings, lm_head, norms, MoE routers, the vision tower, and the checkpoint's own
`modules_to_not_convert` / `ignore` list) stays at the checkpoint's 16 bits. A method not in the table
is `unknown`: the planner says so and plans it at the bits its config states (16 without them).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from servestack.modelinfo.facts import Quantization
from servestack.modelinfo.families import QUANT_METHODS
from servestack.modelinfo.ggufmix import type_bits
from servestack.modelinfo.params import ParamGroup

SCALE_BITS = 16  # the bf16/fp16 scale of a group of int weights
FP4_SCALE_BITS = 8  # MXFP4's E8M0 and NVFP4's E4M3 scales
BNB_ABSMAX_BITS = 32  # bitsandbytes' float32 absmax per block of 64
BNB_DOUBLE_QUANT_BITS = 8 + 32 / 256  # double-quantised: an 8-bit absmax, plus a float32 per 256 blocks


@dataclass(frozen=True)
class Method:
    """What a quantisation method stores when the config does not say otherwise."""

    bits: float
    group_size: int | None = None  # weights per scale; None: per channel, per tensor or per 128x128 block
    zero_point: bool = False
    float_weights: bool = False  # FP8/FP4 weights
    experts_only: bool = False  # quantises the MoE experts and nothing else


INT4_GROUPED = Method(4, 128, zero_point=True)
FP8 = Method(8, float_weights=True)
INT8 = Method(8)

# quant_method (HF) or --quantization (vLLM, SGLang) → what it stores.
METHODS: Mapping[str, Method] = {
    "fp8": FP8,
    "fbgemm_fp8": FP8,
    "ptpc_fp8": FP8,
    "w8a8_fp8": FP8,
    "modelopt": FP8,
    "modelopt_fp8": FP8,
    "modelopt_fp4": Method(4, 16, float_weights=True),
    "nvfp4": Method(4, 16, float_weights=True),
    "mxfp4": Method(4, 32, float_weights=True, experts_only=True),
    "w8a8_int8": INT8,
    "int8": INT8,
    "experts_int8": Method(8, experts_only=True),
    "awq": INT4_GROUPED,
    "awq_marlin": INT4_GROUPED,
    "gptq": INT4_GROUPED,
    "gptq_marlin": INT4_GROUPED,
    "marlin": INT4_GROUPED,
    "moe_wna16": INT4_GROUPED,
    "auto-round": INT4_GROUPED,
    "compressed-tensors": INT4_GROUPED,  # its config_groups say which scheme (read below)
    "w4afp8": Method(4, 128),
    "bitsandbytes": Method(4, 64),
}


def is_known(method: str) -> bool:
    return method in METHODS or type_bits(method) is not None


def read_quantization(config: Mapping[str, Any]) -> Quantization:
    """A HF `quantization_config` as far as memory goes (None fields: the method's default)."""
    method = str(config.get("quant_method", "")).lower()
    method = QUANT_METHODS.get(method, method)
    scheme = _compressed_tensors_weights(config) if method == "compressed-tensors" else {}
    return Quantization(
        method=method,
        bits=_bits(config, scheme),
        group_size=_group_size(config, scheme),
        zero_point=_zero_point(config, scheme),
        float_weights=scheme.get("type") == "float",
        double_quant=bool(config.get("bnb_4bit_use_double_quant", False)),
        keep=tuple(_keep(config)),
    )


def quantized_bits(quant: Quantization) -> float | None:
    """Stored bits per quantised weight, scales and zero points included; None when the method is unknown."""
    rule = METHODS.get(quant.method)
    if rule is None:
        return type_bits(quant.method)  # mistral.rs quantises in place to a ggml type (`--isq Q4K`)
    bits = quant.bits or rule.bits
    group = rule.group_size if quant.group_size is None else quant.group_size
    if not group or group < 0 or bits >= 8:  # per channel, per tensor or per 128x128 block: scales are negligible
        return bits
    if quant.method == "bitsandbytes":
        return bits + (BNB_DOUBLE_QUANT_BITS if quant.double_quant else BNB_ABSMAX_BITS) / group
    scale = FP4_SCALE_BITS if rule.float_weights or quant.float_weights else SCALE_BITS
    zero_point = rule.zero_point if quant.zero_point is None else quant.zero_point
    return bits + (scale + (bits if zero_point else 0)) / group


def is_quantized(group: ParamGroup, quant: Quantization) -> bool:
    """Whether `quant` quantises `group`: linear layers not in the checkpoint's keep list."""
    if group.kind != "linear":
        return False
    rule = METHODS.get(quant.method)
    if rule is not None and rule.experts_only and not group.name.endswith(".experts"):
        return False
    return not any(_matches(pattern, group.name) for pattern in quant.keep)


def _matches(pattern: str, name: str) -> bool:
    """vLLM's test for skipped modules: `re:` regexes, `*` globs, else the pattern inside the name."""
    if pattern.startswith("re:"):
        return re.match(pattern[3:], name) is not None
    if "*" in pattern:
        return re.search(re.escape(pattern).replace(r"\*", r"[^.]+"), name) is not None
    return pattern in name


def _compressed_tensors_weights(config: Mapping[str, Any]) -> Mapping[str, Any]:
    groups = config.get("config_groups") or {}
    for group in groups.values() if isinstance(groups, Mapping) else ():
        weights = group.get("weights") if isinstance(group, Mapping) else None
        if isinstance(weights, Mapping):
            return weights
    return {}


def _bits(config: Mapping[str, Any], scheme: Mapping[str, Any]) -> float | None:
    if scheme.get("num_bits"):
        return float(scheme["num_bits"])
    if config.get("load_in_8bit"):
        return 8.0
    if config.get("load_in_4bit"):
        return 4.0
    for key in ("bits", "w_bit", "weight_bits"):
        if config.get(key):
            return float(config[key])
    return None


def _group_size(config: Mapping[str, Any], scheme: Mapping[str, Any]) -> int | None:
    if scheme:
        return int(scheme["group_size"]) if scheme.get("strategy") == "group" and scheme.get("group_size") else -1
    for key in ("group_size", "q_group_size"):
        if config.get(key) is not None:
            return int(config[key])
    return None


def _zero_point(config: Mapping[str, Any], scheme: Mapping[str, Any]) -> bool | None:
    """Whether zero points are stored (GPTQ stores its qzeros even when symmetric); None: the method's default."""
    if scheme:
        return scheme.get("symmetric") is False
    if "zero_point" in config:
        return bool(config["zero_point"])
    return None


def _keep(config: Mapping[str, Any]) -> Iterable[str]:
    for key in ("modules_to_not_convert", "ignore", "llm_int8_skip_modules", "ignored_layers"):
        value = config.get(key)
        if isinstance(value, list):
            yield from (str(item) for item in value)
