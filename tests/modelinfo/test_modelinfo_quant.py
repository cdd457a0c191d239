"""Quantisation configs read, priced per stored bit, and GGUF mixes estimated as llama.cpp's quantizer makes them."""

from __future__ import annotations

from typing import Any

import pytest
from modelinfo_fixtures import load_reference

from servestack.modelinfo import Quantization, facts_from_config
from servestack.modelinfo.ggufmix import estimate_layout, type_bits
from servestack.modelinfo.params import ParamGroup
from servestack.modelinfo.quant import is_quantized, quantized_bits, read_quantization

REFERENCE = load_reference()
LLAMA_8B = "meta-llama/Llama-3.1-8B-Instruct"


def test_a_method_the_table_does_not_alias_is_kept_not_dropped() -> None:
    """fbgemm_fp8 (Llama 3.1 405B FP8) used to read as no quantisation: planned as bf16, refused."""
    config = {**REFERENCE[LLAMA_8B], "quantization_config": {"quant_method": "fbgemm_fp8", "activation_scale_ub": 1200}}
    facts = facts_from_config(config, model_id="x", source="test")
    assert facts.quantization == "fbgemm_fp8"
    assert facts.quant is not None and quantized_bits(facts.quant) == 8


@pytest.mark.parametrize(
    ("config", "bits"),
    [
        ({"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": True}, 4 + 20 / 128),
        ({"quant_method": "gptq", "bits": 4, "group_size": 128, "sym": True}, 4 + 20 / 128),  # qzeros are stored
        ({"quant_method": "gptq", "bits": 8, "group_size": 128}, 8),
        ({"quant_method": "bitsandbytes", "load_in_4bit": True}, 4.5),
        ({"quant_method": "bitsandbytes", "load_in_4bit": True, "bnb_4bit_use_double_quant": True}, 4 + 8.125 / 64),
        ({"quant_method": "bitsandbytes", "load_in_8bit": True}, 8),
        ({"quant_method": "mxfp4"}, 4.25),
        ({"quant_method": "modelopt_fp4"}, 4.5),
        ({"quant_method": "fp8", "weight_block_size": [128, 128]}, 8),
        (
            {
                "quant_method": "compressed-tensors",
                "config_groups": {
                    "g": {"weights": {"num_bits": 4, "type": "int", "strategy": "group", "group_size": 128}}
                },
            },
            4 + 16 / 128,  # symmetric: a bf16 scale per group, no zero point
        ),
        (
            {
                "quant_method": "compressed-tensors",
                "config_groups": {"g": {"weights": {"num_bits": 8, "strategy": "channel"}}},
            },
            8,
        ),
        (
            {
                "quant_method": "compressed-tensors",
                "config_groups": {
                    "g": {"weights": {"num_bits": 4, "type": "float", "strategy": "group", "group_size": 16}}
                },
            },
            4.5,  # NVFP4: an FP8 scale per 16
        ),
    ],
)
def test_stored_bits_per_weight(config: dict[str, Any], bits: float) -> None:
    assert quantized_bits(read_quantization(config)) == pytest.approx(bits)


def test_an_unknown_method_has_no_price_and_isq_names_are_ggml_types() -> None:
    assert quantized_bits(Quantization(method="some_future_method")) is None
    assert quantized_bits(Quantization(method="Q4K")) == 4.5  # mistral.rs --isq Q4K = ggml Q4_K
    assert type_bits("q8_0") == 8.5 and type_bits("8") == 8.5  # llama-cpp-python's --type_k 8


@pytest.mark.parametrize(
    ("pattern", "name", "kept"),
    [
        ("self_attn", "model.layers.3.self_attn.q_proj", True),  # fbgemm's modules_to_not_convert: a substring
        ("model.layers.0.mlp", "model.layers.0.mlp.down_proj", True),
        ("model.layers.0.mlp", "model.layers.10.mlp.down_proj", False),
        ("re:.*mlp.gate$", "model.layers.3.mlp.gate_proj", False),  # compressed-tensors' regexes
        ("re:.*shared_experts.*", "model.layers.3.mlp.shared_experts.up_proj", True),
        ("model.layers.*.self_attn", "model.layers.7.self_attn.o_proj", True),  # gpt-oss' globs
    ],
)
def test_modules_left_unquantised_match_as_vllm_matches_them(pattern: str, name: str, kept: bool) -> None:
    group = ParamGroup(name, 1, "linear", 0)
    assert is_quantized(group, Quantization(method="fp8", keep=(pattern,))) is not kept


def test_only_linear_layers_are_quantised_and_mxfp4_only_the_experts() -> None:
    fp8, mxfp4 = Quantization(method="fp8"), Quantization(method="mxfp4")
    assert not is_quantized(ParamGroup("model.embed_tokens", 1, "embedding"), fp8)
    assert not is_quantized(ParamGroup("model.layers.0.mlp.gate", 1, "router", 0), fp8)
    assert not is_quantized(ParamGroup("model.layers.0.self_attn.q_proj", 1, "linear", 0), mxfp4)
    assert is_quantized(ParamGroup("model.layers.0.mlp.experts", 1, "linear", 0), mxfp4)


# reference/engines.md §2.5: llama.cpp's tools/quantize/README.md sizes of Llama-3.1-8B per file type.
@pytest.mark.parametrize(
    ("file_type", "gib"), [("Q4_K_M", 4.58), ("Q5_K_M", 5.33), ("Q6_K", 6.14), ("Q8_0", 7.95), ("F16", 14.96)]
)
def test_a_gguf_that_is_not_here_is_estimated_as_the_quantizer_mixes_it(file_type: str, gib: float) -> None:
    facts = facts_from_config(REFERENCE[LLAMA_8B], model_id="llama", source="test")
    layout = estimate_layout(facts, file_type)
    assert layout is not None
    assert layout.total / 2**30 == pytest.approx(gib, rel=0.005)
    assert estimate_layout(facts, "Q4_K_XL") is None  # a mix with no rule
