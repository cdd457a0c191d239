"""GGUF weight bytes without the file: which ggml type llama.cpp's quantizer gives each tensor of a mix.

A file type such as Q4_K_M is a mix: a base type, with some tensors promoted. This follows
`llama_tensor_get_type_impl` in llama.cpp's `src/llama-quant.cpp` for the common mixes: the output
projection (and a tied embedding) at Q6_K (Q8_0 when the base is Q8_0; Q5_K under 2-bit IQ mixes);
in Q4_K_M / Q5_K_M the V projection and the down projection at Q6_K on the layers `use_more_bits`
picks (the first and last eighth, and every third in between); in Q4_K_S / Q3_K_M the first layers'
down projections one step up; 8-expert models with their K and V at Q8_0 and output at Q5_K;
norms and MoE routers in F32. With the file at hand, its tensor headers give the bytes exactly
(`ggufinfo.py`); this estimate is for planning a file that is not here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

from servestack.modelinfo.facts import ModelFacts, WeightLayout
from servestack.modelinfo.params import ParamGroup, parameter_groups

Pick = Callable[[int, int], bool]


def type_bits(name: str) -> float | None:
    """Bits per weight of a ggml type (`Q4_K` 4.5, `Q6_K` 6.5625, `Q8_0` 8.5); also mistral.rs's ISQ names (`Q4K`)."""
    key = name.upper()
    if key.isdigit() and int(key) in GGMLQuantizationType._value2member_map_:  # llama-cpp-python's --type_k 8
        key = GGMLQuantizationType(int(key)).name
    if key not in GGMLQuantizationType.__members__ and len(key) == 3 and key.endswith("K"):
        key = f"{key[:2]}_K"  # ISQ spells Q4_K as Q4K
    if key not in GGMLQuantizationType.__members__:
        return None
    block, size = GGML_QUANT_SIZES[GGMLQuantizationType[key]]
    return size * 8 / block


def use_more_bits(i: int, n: int) -> bool:
    """llama.cpp's pick of the layers a mix gives more bits: the first and last eighth, and every third between."""
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def _first_eighth(i: int, n: int) -> bool:
    return i < n // 8


@dataclass(frozen=True)
class Mix:
    """A file type: its base type, and the promotions its V and down projections get (type, which layers)."""

    base: str
    v: tuple[str, Pick] | None = None
    down: tuple[str, Pick] | None = None


MIXES: dict[str, Mix] = {
    "F16": Mix("F16"),
    "BF16": Mix("BF16"),
    "Q8_0": Mix("Q8_0"),
    "Q6_K": Mix("Q6_K"),
    "Q5_K_M": Mix("Q5_K", ("Q6_K", use_more_bits), ("Q6_K", use_more_bits)),
    "Q5_K_S": Mix("Q5_K"),
    "Q5_0": Mix("Q5_0"),
    "Q5_1": Mix("Q5_1"),
    "Q4_K_M": Mix("Q4_K", ("Q6_K", use_more_bits), ("Q6_K", use_more_bits)),
    "Q4_K_S": Mix("Q4_K", ("Q5_K", lambda i, n: i < 4), ("Q5_K", _first_eighth)),
    "Q4_0": Mix("Q4_0"),
    "Q4_1": Mix("Q4_1"),
    "IQ4_XS": Mix("IQ4_XS", None, ("Q5_K", _first_eighth)),
    "IQ4_NL": Mix("IQ4_NL", None, ("Q5_K", _first_eighth)),
    "Q3_K_M": Mix("Q3_K", ("Q4_K", lambda i, n: True), ("Q4_K", lambda i, n: True)),
    "Q3_K_L": Mix("Q3_K", ("Q5_K", lambda i, n: True), ("Q5_K", lambda i, n: True)),
    "Q3_K_S": Mix("Q3_K"),
    "Q2_K": Mix("Q2_K", ("Q4_K", lambda i, n: True), ("Q3_K", lambda i, n: True)),
    "IQ2_XXS": Mix("IQ2_XXS", ("Q4_K", lambda i, n: True), ("Q2_K", _first_eighth)),
    "IQ2_XS": Mix("IQ2_XS", ("Q4_K", lambda i, n: True), ("Q2_K", _first_eighth)),
    "IQ3_XXS": Mix("IQ3_XXS", ("Q4_K", lambda i, n: True), ("Q4_K", _first_eighth)),
}
LOW_BIT_OUTPUT = {"IQ2_XXS", "IQ2_XS", "IQ3_XXS"}  # these mixes keep the output at Q5_K


def is_known_mix(file_type: str) -> bool:
    return file_type.upper() in MIXES


def estimate_layout(facts: ModelFacts, file_type: str) -> WeightLayout | None:
    """Bytes per place of `facts` quantised as `file_type`; None for a mix not in `MIXES`."""
    mix = MIXES.get(file_type.upper())
    if mix is None:
        return None
    groups = parameter_groups(facts)
    downs = [g for g in groups if g.name.endswith(("down_proj", ".experts"))]
    layers = [0] * facts.layers
    embedding = output = other = 0
    for group in groups:
        size = int(group.parameters * _bits(group, facts, mix, len(downs)) / 8)
        if group.kind == "embedding":
            embedding = size
        elif group.kind == "lm_head":
            output = size
        elif group.layer is not None:
            layers[group.layer] += size
        elif group.kind != "vision":  # the vision tower lives in a separate mmproj file
            other += size
    if facts.tie_word_embeddings:  # the one matrix is quantised as the output
        embedding = int(facts.vocab_size * facts.hidden_size * _output_bits(mix) / 8)
    return WeightLayout(embedding, output, tuple(layers), other)


def _bits(group: ParamGroup, facts: ModelFacts, mix: Mix, downs: int) -> float:
    if group.kind in ("norm", "router"):
        return 32.0
    if group.kind == "lm_head":
        return _output_bits(mix)
    eight_experts = facts.moe is not None and facts.moe.experts == 8
    name, layer = group.name, group.layer or 0
    if name.endswith(("v_proj", "kv_b_proj")):
        if eight_experts and mix.base not in ("F16", "BF16"):
            return _bits_of("Q8_0")
        if mix.v and mix.v[1](layer, facts.layers):
            return _bits_of(mix.v[0])
    if name.endswith("k_proj") and eight_experts and mix.base not in ("F16", "BF16", "Q8_0"):
        return _bits_of("Q8_0")
    if name.endswith("o_proj") and eight_experts and mix.base in ("Q2_K", "Q3_K", "Q4_K", "IQ4_XS", "IQ4_NL"):
        return _bits_of("Q5_K")
    if name.endswith(("down_proj", ".experts")) and mix.down and mix.down[1](layer, downs):
        promoted = _bits_of(mix.down[0])
        if name.endswith(".experts"):  # one third of the experts' weights is their down projection
            return (2 * _bits_of(mix.base) + promoted) / 3
        return promoted
    return _bits_of(mix.base)


def _output_bits(mix: Mix) -> float:
    if mix.base in ("F16", "BF16", "Q8_0"):
        return _bits_of(mix.base)
    return _bits_of("Q5_K" if mix.base in LOW_BIT_OUTPUT else "Q6_K")


def _bits_of(name: str) -> float:
    bits = type_bits(name)
    assert bits is not None, name
    return bits
