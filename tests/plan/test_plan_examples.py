"""The issue's examples: seed 001 explored, GLM-4.7 and Mixtral on 80 GB and 141 GB cards, §3.4 hand checks."""

from __future__ import annotations

import pytest
from plan_fixtures import DEEPSEEK, GLM, LLAMA_70B, MIXTRAL, request

from servestack.gpus import GIB, parse_inventory
from servestack.plan import Verdict, evaluate, explore_tp, smallest_fitting_tp


def test_seed_001_deepseek_v25_bf16_on_4xh200() -> None:
    """TP1 and TP2 do not fit, TP3 is invalid (128 attention heads), TP4 fits with a KV-token figure."""
    tp1, tp2, tp3, tp4 = explore_tp(request(DEEPSEEK, "sglang"), parse_inventory("4xH200").gpus)
    assert (tp1.verdict, tp2.verdict) == (Verdict.DOES_NOT_FIT, Verdict.DOES_NOT_FIT)
    assert "weights take 439.1 GiB per GPU at TP 1" in tp1.reason
    assert "weights take 220.2 GiB per GPU at TP 2" in tp2.reason  # MLA's down-projections are on every rank
    assert tp3.verdict is Verdict.INVALID
    assert tp3.reason.startswith("128 attention heads are not divisible by TP 3")
    assert tp4.verdict is Verdict.FITS
    assert tp4.memory is not None
    # 439.1 GiB / 4, plus the replicated MLA down-projections and routers (1.3 GiB) on every rank
    assert tp4.memory.weights / GIB == pytest.approx(110.75, abs=0.1)
    assert tp4.memory.fraction == 0.9  # SGLang's default for a 140 GiB GPU at TP 4
    # pre-load free ≈ 140.4 − 1.45 GiB; × 0.9 − 110.75 GiB of weights ≈ 14.3 GiB of KV at 69,120 B/token (MLA)
    assert tp4.kv_tokens == pytest.approx(222_230, rel=0.01)
    assert tp4.sequences == 1  # one full 163,840-token sequence


@pytest.mark.parametrize("engine", ["vllm", "sglang"])
def test_glm_47_bf16_tp8_does_not_fit_8xh100_but_fits_8xh200(engine: str) -> None:
    glm = request(GLM, engine)
    on_h100 = evaluate(glm, parse_inventory("8xH100-80GB").gpus, 8)
    on_h200 = evaluate(glm, parse_inventory("8xH200").gpus, 8)
    assert on_h100.verdict is Verdict.DOES_NOT_FIT
    assert "weights take 82.3 GiB per GPU at TP 8" in on_h100.reason  # norms and routers on every rank
    assert on_h200.verdict is Verdict.FITS
    assert on_h200.kv_tokens > 800_000  # 47,104 B/token/GPU
    assert smallest_fitting_tp(glm, parse_inventory("8xH100-80GB").gpus) is None


@pytest.mark.parametrize("engine", ["vllm", "sglang"])
@pytest.mark.parametrize("spec", ["8xH100-80GB", "8xA100-80GB", "4x80GiB"])
def test_mixtral_8x7b_bf16_needs_tp2_on_80gb_cards(engine: str, spec: str) -> None:
    mixtral = request(MIXTRAL, engine)
    gpus = parse_inventory(spec).gpus
    assert evaluate(mixtral, gpus[:1], 1).verdict is Verdict.DOES_NOT_FIT  # 87.0 GiB of weights
    best = smallest_fitting_tp(mixtral, gpus)
    assert best is not None and best.tp == 2
    assert best.memory is not None and best.memory.weights / GIB == pytest.approx(43.5, abs=0.1)


def test_llama_70b_needs_tp2_on_80gb_cards_and_tp4_for_a_full_128k_sequence() -> None:
    gpus = parse_inventory("8xH100-80GB").gpus
    assert evaluate(request(LLAMA_70B, "vllm"), gpus[:1], 1).verdict is Verdict.DOES_NOT_FIT
    short = smallest_fitting_tp(request(LLAMA_70B, "vllm", context=8192), gpus)
    assert short is not None and short.tp == 2
    assert short.kv_per_token == 163_840
    full = smallest_fitting_tp(request(LLAMA_70B, "vllm"), gpus)  # 131,072 tokens take 20 GiB of KV per GPU at TP 2
    assert full is not None and full.tp == 4


@pytest.mark.parametrize("model_id", ["Qwen/Qwen2.5-Coder-32B-Instruct", "codellama/CodeLlama-34b-Instruct-hf"])
def test_32b_class_models_fit_one_80gb_card_with_little_kv(model_id: str) -> None:
    fit = evaluate(request(model_id, "vllm"), parse_inventory("1xH100-80GB").gpus, 1)
    assert fit.verdict is Verdict.FITS
    assert fit.memory is not None and 5 * GIB < fit.memory.kv < 10 * GIB


def test_deepseek_v25_on_8x80gb_tp8() -> None:
    # §3.4: ~54.9 GiB of weights per GPU (56.0 with the MLA down-projections and routers every rank holds);
    # at util 0.9 about 14 GiB/GPU of KV → ≈ 217k tokens.
    fit = evaluate(request(DEEPSEEK, "vllm"), parse_inventory("8xH100-80GB").gpus, 8)
    assert fit.verdict is Verdict.FITS
    assert fit.memory is not None and fit.memory.weights / GIB == pytest.approx(56.0, abs=0.1)
    assert fit.kv_tokens == pytest.approx(217_000, rel=0.15)


@pytest.mark.parametrize(
    ("model_id", "engine", "spec"),
    [(DEEPSEEK, "sglang", "8xH100-80GB"), (DEEPSEEK, "vllm", "8xH100-80GB"), (LLAMA_70B, "vllm", "8xH100-80GB")],
)
def test_the_recommended_tp_is_one_explore_tp_says_fits(model_id: str, engine: str, spec: str) -> None:
    """The fix text (smallest_fitting_tp) and `--explore-tp` read one computation: they cannot disagree."""
    gpus = parse_inventory(spec).gpus
    explored = {fit.tp: fit for fit in explore_tp(request(model_id, engine), gpus)}
    best = smallest_fitting_tp(request(model_id, engine), gpus)
    assert best is not None and explored[best.tp] == best and best.verdict is Verdict.FITS


def test_deepseek_v25_on_8xh100_fits_at_tp8_with_a_reduced_context() -> None:
    explored = explore_tp(request(DEEPSEEK, "sglang"), parse_inventory("8xH100-80GB").gpus)
    assert [fit.tp for fit in explored if fit.verdict is Verdict.FITS] == [8]
    tp8 = explored[7]
    assert (tp8.context, tp8.kv_tokens, tp8.sequences) == (131_072, 131_394, 1)
    assert tp8.reason.endswith("the model's full 163,840 tokens do not fit, so the context is 131,072")
    fixed = request(DEEPSEEK, "sglang", context=163_840)  # a context the user set is never reduced
    assert smallest_fitting_tp(fixed, parse_inventory("8xH100-80GB").gpus) is None
