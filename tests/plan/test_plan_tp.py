"""TP validity: the engines' sharding rules over the reference configs, each failure with its reason."""

from __future__ import annotations

import dataclasses

import pytest
from plan_fixtures import DEEPSEEK, GLM, MIXTRAL, REFERENCE, facts

from servestack.plan import tp_problems, valid_tp_sizes

MODELS = sorted(REFERENCE)


@pytest.mark.parametrize("engine", ["vllm", "sglang"])
@pytest.mark.parametrize("model_id", MODELS)
def test_valid_tp_sizes_match_the_reference(model_id: str, engine: str) -> None:
    assert valid_tp_sizes(facts(model_id), engine, 16) == REFERENCE[model_id]["_computed"]["valid_tp_bf16"]


@pytest.mark.parametrize(
    "model_id", [m for m in MODELS if "valid_tp_if_fp8_block128_ckpt" in REFERENCE[m]["_computed"]]
)
def test_block_fp8_checkpoints(model_id: str) -> None:
    fp8 = dataclasses.replace(facts(model_id), quantization="fp8", weight_block_size=(128, 128))
    expected = REFERENCE[model_id]["_computed"]["valid_tp_if_fp8_block128_ckpt"]
    assert valid_tp_sizes(fp8, "vllm", 16) == expected


def test_deepseek_tp3_is_blocked_by_the_128_attention_heads() -> None:
    problems = tp_problems(facts(DEEPSEEK), 3, "sglang")
    assert problems[0].rule == "attention-heads"
    assert problems[0].reason == "128 attention heads are not divisible by TP 3"
    assert {p.rule for p in problems} == {"attention-heads", "vocab"}  # the vocab is 102400: also not /3


@pytest.mark.parametrize(
    ("model_id", "tp", "rule", "reason"),
    [
        ("Qwen/Qwen2.5-0.5B-Instruct", 14, "vocab", "the vocabulary (151936) is not divisible by TP 14"),
        ("Qwen/Qwen2.5-0.5B-Instruct", 7, "kv-heads", "TP 7 is not a multiple of the 2 KV heads"),
        ("Qwen/Qwen2.5-Coder-32B-Instruct", 16, "attention-heads", "40 attention heads are not divisible by TP 16"),
        ("Qwen/Qwen2.5-Coder-32B-Instruct", 5, "kv-heads", "8 KV heads are not divisible by TP 5"),
        ("Qwen/Qwen2-VL-7B-Instruct", 8, "attention-heads", "28 attention heads"),
        ("mistralai/Mistral-7B-Instruct-v0.1", 3, "attention-heads", "32 attention heads"),
    ],
)
def test_reasons(model_id: str, tp: int, rule: str, reason: str) -> None:
    problem = tp_problems(facts(model_id), tp, "vllm")[0]
    assert problem.rule == rule
    assert reason in problem.reason


def test_vocab_padding_to_64_makes_raw_divisibility_unnecessary() -> None:
    odd = dataclasses.replace(facts(MIXTRAL), vocab_size=32001)  # padded to 32064 = 2^6 × 501
    assert not [p for p in tp_problems(odd, 2, "vllm") if p.rule == "vocab"]


def test_fp8_block_reason_names_the_shard() -> None:
    fp8 = dataclasses.replace(facts(GLM), quantization="fp8", weight_block_size=(128, 128))
    problems = tp_problems(fp8, 8, "sglang")
    assert [p.rule for p in problems] == ["fp8-block"]
    assert "1536/8 = 192 is not a multiple of the FP8 block size 128" in problems[0].reason


def test_expert_parallel_lifts_the_moe_width_rule() -> None:
    moe = facts(MIXTRAL).moe
    assert moe is not None
    odd = dataclasses.replace(facts(MIXTRAL), moe=dataclasses.replace(moe, intermediate_size=14337))
    assert [p.rule for p in tp_problems(odd, 2, "vllm")] == ["moe-intermediate"]
    assert tp_problems(odd, 2, "vllm", expert_parallel=True) == []


def test_mistralrs_checks_heads_only_and_llamacpp_has_no_tp() -> None:
    qwen = facts("Qwen/Qwen2.5-0.5B-Instruct")
    assert tp_problems(qwen, 14, "mistralrs") == []  # no vocab rule documented
    assert [p.rule for p in tp_problems(qwen, 2, "llamacpp")] == ["no-tp"]
    assert tp_problems(qwen, 1, "llamacpp") == []
