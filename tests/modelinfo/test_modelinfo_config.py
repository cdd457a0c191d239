"""ModelFacts from HF config.json: every reference config, parameter counts, MoE, MLA, quantisation."""

from __future__ import annotations

from typing import Any

import pytest
from modelinfo_fixtures import load_reference

from servestack.errors import ModelInfoError
from servestack.modelinfo import Catalog, count_active_parameters, facts_from_config

REFERENCE = load_reference()
MODELS = sorted(REFERENCE)


@pytest.mark.parametrize("model_id", MODELS)
def test_parameter_count_matches_the_computed_reference(model_id: str) -> None:
    config = REFERENCE[model_id]
    facts = facts_from_config(config, model_id=model_id, source="test")
    assert facts.parameters == config["_computed"]["total_params"]
    assert count_active_parameters(facts) == config["_computed"]["active_params"]


@pytest.mark.parametrize("model_id", MODELS)
def test_shape_is_read_from_the_config(model_id: str) -> None:
    config = REFERENCE[model_id]
    facts = facts_from_config(config, model_id=model_id, source="test")
    assert facts.layers == config["num_hidden_layers"]
    assert facts.hidden_size == config["hidden_size"]
    assert facts.attention_heads == config["num_attention_heads"]
    assert facts.kv_heads == config["num_key_value_heads"]
    assert facts.vocab_size == config["vocab_size"]
    assert facts.max_context == config["max_position_embeddings"]
    assert facts.dtype == "bfloat16"
    assert facts.tie_word_embeddings == config["tie_word_embeddings"]


@pytest.mark.parametrize(
    ("model_id", "experts", "per_token", "expert_width", "shared_width", "dense_layers"),
    [
        ("deepseek-ai/DeepSeek-V2.5-1210", 160, 6, 1536, 3072, 1),
        ("zai-org/GLM-4.7", 160, 8, 1536, 1536, 3),
        ("mistralai/Mixtral-8x7B-Instruct-v0.1", 8, 2, 14336, 0, 0),
    ],
)
def test_moe_fields(
    model_id: str, experts: int, per_token: int, expert_width: int, shared_width: int, dense_layers: int
) -> None:
    moe = facts_from_config(REFERENCE[model_id], model_id=model_id, source="test").moe
    assert moe is not None
    assert (moe.experts, moe.experts_per_token, moe.intermediate_size) == (experts, per_token, expert_width)
    assert (moe.shared_intermediate_size, moe.first_dense_layers) == (shared_width, dense_layers)


def test_deepseek_mla_dims_and_head_dim() -> None:
    facts = facts_from_config(REFERENCE["deepseek-ai/DeepSeek-V2.5-1210"], model_id="ds", source="test")
    assert facts.mla is not None
    assert facts.mla.latent_dim == 576  # kv_lora_rank 512 + rope 64
    assert facts.head_dim == 192  # nope 128 + rope 64, not hidden / heads


def test_explicit_head_dim_wins_over_hidden_by_heads() -> None:
    facts = facts_from_config(REFERENCE["zai-org/GLM-4.7"], model_id="glm", source="test")
    assert facts.head_dim == 128  # 5120 / 96 would be 53
    assert facts.mtp_layers == 1


def test_qwen2_vl_vision_tower_is_counted_and_its_heads_known() -> None:
    config = REFERENCE["Qwen/Qwen2-VL-7B-Instruct"]
    facts = facts_from_config(config, model_id="qwen2-vl", source="test")
    assert facts.vision_parameters == config["_computed"]["vision_params"]
    assert facts.vision_heads == 16


def test_block_fp8_quantization_config_is_read() -> None:
    config = {
        **REFERENCE["deepseek-ai/DeepSeek-V2.5-1210"],
        "quantization_config": {"quant_method": "fp8", "weight_block_size": [128, 128]},
    }
    facts = facts_from_config(config, model_id="ds-fp8", source="test")
    assert facts.quantization == "fp8"
    assert facts.weight_block_size == (128, 128)


def test_a_nested_text_config_is_lifted() -> None:
    llama = {k: v for k, v in REFERENCE["meta-llama/Llama-3.1-8B-Instruct"].items() if not k.startswith("_")}
    config: dict[str, Any] = {"architectures": ["LlavaForConditionalGeneration"], "text_config": llama}
    facts = facts_from_config(config, model_id="llava", source="test")
    assert facts.layers == 32
    assert facts.parameters == REFERENCE["meta-llama/Llama-3.1-8B-Instruct"]["_computed"]["total_params"]


def test_sliding_window_disabled_by_flag_is_ignored() -> None:
    config = {**REFERENCE["Qwen/Qwen2.5-0.5B-Instruct"], "sliding_window": 32768, "use_sliding_window": False}
    assert facts_from_config(config, model_id="q", source="test").sliding_window is None
    mistral = facts_from_config(REFERENCE["mistralai/Mistral-7B-Instruct-v0.1"], model_id="m", source="test")
    assert mistral.sliding_window == 4096


def test_a_config_without_layers_names_the_key() -> None:
    with pytest.raises(ModelInfoError, match="num_hidden_layers"):
        facts_from_config({"hidden_size": 64, "num_attention_heads": 4, "vocab_size": 10}, model_id="x", source="cfg")


@pytest.mark.parametrize("model_id", MODELS)
def test_catalog_has_every_reference_model_with_the_same_facts(model_id: str) -> None:
    catalog = Catalog.builtin()
    facts = catalog.facts(model_id)
    assert facts is not None
    assert facts.source == "built-in catalog"
    assert facts.parameters == REFERENCE[model_id]["_computed"]["total_params"]


# Models in the catalog beyond the reference configs, with their published parameter totals.
PUBLISHED = {
    "HuggingFaceTB/SmolLM2-135M-Instruct": 134_515_008,
    "Qwen/Qwen2.5-7B-Instruct": 7_615_616_512,
    "meta-llama/Llama-3.2-1B-Instruct": 1_235_814_400,
    "meta-llama/Llama-3.2-3B-Instruct": 3_212_749_824,
    "mistralai/Mistral-7B-Instruct-v0.3": 7_248_023_552,
    "deepseek-ai/DeepSeek-V3": 671_026_419_200,
}


@pytest.mark.parametrize(("model_id", "parameters"), PUBLISHED.items())
def test_catalog_extras_reproduce_published_totals(model_id: str, parameters: int) -> None:
    facts = Catalog.builtin().facts(model_id)
    assert facts is not None
    assert facts.parameters == parameters


def test_qwen3_is_about_8_2b() -> None:
    facts = Catalog.builtin().facts("Qwen/Qwen3-8B")
    assert facts is not None and facts.qk_norm
    assert round(facts.parameters / 1e9, 2) == 8.19


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("meta-llama/Llama-3.1-8B-Instruct", "meta-llama/Llama-3.1-8B-Instruct"),
        ("META-LLAMA/llama-3.1-8b-instruct", "meta-llama/Llama-3.1-8B-Instruct"),
        ("DeepSeek-V2.5-1210", "deepseek-ai/DeepSeek-V2.5-1210"),
        ("org/unknown-model", None),
    ],
)
def test_catalog_lookup(query: str, expected: str | None) -> None:
    assert Catalog.builtin().resolve(query) == expected


def test_yarn_rope_scaling_extends_the_context() -> None:
    qwen = {k: v for k, v in REFERENCE["Qwen/Qwen2.5-Coder-32B-Instruct"].items() if not k.startswith("_")}
    qwen["rope_scaling"] = {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}
    assert facts_from_config(qwen, model_id="q", source="test").max_context == 131072
    # DeepSeek's config already states the scaled length (4096 × 40); Llama 3.1's llama3 scaling is not YaRN.
    deepseek = facts_from_config(REFERENCE["deepseek-ai/DeepSeek-V2.5-1210"], model_id="d", source="test")
    assert deepseek.max_context == 163840
