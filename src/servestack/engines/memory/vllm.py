"""vLLM's memory rule: what its profile run measures, and what that leaves for the KV cache.

Every vLLM sizes its pool the same way (V1: `vllm/v1/worker/gpu_worker.py` `Worker.determine_available_memory`;
V0: `vllm/worker/worker.py` `determine_num_available_blocks`, with `vllm/utils` `memory_profiling` since 0.6.4):

    kv = total × gpu_memory_utilization − weights − peak activation − non-torch memory [− CUDA graphs]
    tokens = kv // (bytes per token × block) × block               (blocks of 16 tokens)

`total` is the GPU's whole memory: the fraction is of TOTAL memory, per process, and V1 refuses to start
when less than that is free. The peak activation is that of `profile_run` (`gpu_model_runner.py`): a dummy
batch of `max_num_batched_tokens` tokens through the model, then the sampler on `max_num_seqs` rows of
logits; whichever is larger. Non-torch memory is what cuBLAS, NCCL and the allocator hold outside torch.
Since 0.21 vLLM also profiles CUDA-graph memory before sizing the pool (earlier builds captured graphs
afterwards, from the headroom above the fraction). `--kv-cache-memory` replaces all of it with a size.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from servestack.engines.memory.base import CUDA_CONTEXT, GpuMemory, MemoryBudget, MemoryRequest
from servestack.engines.memory.flags import at_least, number, switch
from servestack.engines.memory.kvcache import kv_bytes_per_token, kv_element_bytes
from servestack.engines.memory.weights import model_weights, weight_dtype
from servestack.gpus import GIB, Gpu
from servestack.modelinfo import ModelFacts

# 0.9 up to 2025 and 0.92 in 2026 releases (`vllm/config/cache.py`); the planner assumes 0.9.
DEFAULT_UTILIZATION = 0.9
BLOCK_TOKENS = 16
BYTES = 2  # activations in 16 bits
SAMPLER_BYTES_PER_LOGIT = 8  # fp32 logits and one fp32 copy (probabilities): 0.31 GiB for 256 × 151,936 (§3.3)
BIG_GPU = 70 * GIB  # `_set_default_args` gives GPUs this large bigger batches (0.9+)
# Non-torch memory: 0.30 GiB at TP 1 on an RTX 4090 (V1, §3.3); V0 logs 0.03–0.35 GiB at TP 1 and 0.2–0.43 GiB
# at TP 2–16 (corpus cases 001–021); V1 with TP > 1 adds NCCL communicators and custom all-reduce buffers
# (assumed 0.4 GiB more).
NON_TORCH_V1 = int(0.3 * GIB)
NON_TORCH_V1_TP = int(0.7 * GIB)
NON_TORCH_V0 = int(0.2 * GIB)
NON_TORCH_V0_TP = int(0.3 * GIB)
# V0's MLA backends pad each 576-element latent to 640 (corpus case 006: 34,560 B/token for 27 layers).
V0_MLA_ALIGN = 128
CUDA_GRAPH_CAPTURE = 512  # the largest batch V1 captures by default (`max_cudagraph_capture_size`)


class VllmMemory:
    strict_context = True
    caps_context = False
    start_order = None

    def default_context(self, facts: ModelFacts, args: Sequence[str] = ()) -> int:
        return facts.max_context or 4096

    def default_fraction(self, gpu: Gpu, tp: int, facts: ModelFacts | None = None) -> float | None:
        return DEFAULT_UTILIZATION

    def budget(self, request: MemoryRequest) -> MemoryBudget:
        facts, gpu, args = request.facts, request.gpu, request.args
        fraction = request.fraction or DEFAULT_UTILIZATION
        weights = model_weights(facts, dtype=request.dtype, quantization=request.quantization)
        per_gpu = weights.per_gpu(request.tp)
        v1 = is_v1(request.version, request.env)
        overhead = peak_activation(request, v1) + non_torch_memory(v1, request.tp) + cuda_graph_memory(request, v1)
        kv_memory = number(args, "--kv-cache-memory", "--kv-cache-memory-bytes")
        kv = int(kv_memory) if kv_memory else int(gpu.total_bytes * fraction) - per_gpu - overhead
        memory = GpuMemory(
            total=gpu.total_bytes,
            weights=per_gpu,
            kv=kv,
            overhead=overhead,
            share=fraction,
            fraction=fraction,
            kv_limit=kv,
            outside_claim="" if at_least(request.version, 0, 21) else "CUDA graphs",
        )
        return MemoryBudget(
            memory,
            weights,
            kv_per_token(request, v1),
            block_tokens=int(number(args, "--block-size") or BLOCK_TOKENS),
            startup=tuple(_startup_problems(request, fraction)) if v1 else (),
        )


def is_v1(version: str | None, env: Mapping[str, str]) -> bool:
    """V1 is opt-in (`VLLM_USE_V1=1`) from 0.7, the default from 0.8 (`VLLM_USE_V1=0` keeps V0) and the only
    engine from 0.11."""
    if not at_least(version, 0, 8):
        return at_least(version, 0, 7) and env.get("VLLM_USE_V1") == "1"
    return at_least(version, 0, 11) or env.get("VLLM_USE_V1") != "0"


def non_torch_memory(v1: bool, tp: int) -> int:
    if v1:
        return NON_TORCH_V1_TP if tp > 1 else NON_TORCH_V1
    return NON_TORCH_V0_TP if tp > 1 else NON_TORCH_V0


def kv_per_token(request: MemoryRequest, v1: bool) -> int:
    facts = request.facts
    element = kv_element_bytes(request.kv_cache_dtype, weight_dtype(facts, request.dtype))
    if facts.mla is not None and not v1:
        width = -(-facts.mla.latent_dim // V0_MLA_ALIGN) * V0_MLA_ALIGN
        return int(facts.layers * width * element)
    return kv_bytes_per_token(facts, request.tp, element)


def profile_batch(request: MemoryRequest, v1: bool) -> tuple[int, int]:
    """(tokens, sequences) of the profile run's dummy batch: the flags, else the defaults of that version.

    V0 (`vllm/config.py` SchedulerConfig): 2048 tokens with chunked prefill (on by default past 32k of
    context, and from 0.8 always: corpus case 019 profiles 0.37 GiB at an 8k context), else the whole
    context; 256 sequences. V1 (`engine/arg_utils.py` `_set_default_args`):
    2048 tokens and 256 sequences, or 8192 and 1024 on GPUs of 70 GiB and more from 0.9.
    """
    args = request.args
    big = v1 and at_least(request.version, 0, 9) and request.gpu.total_bytes >= BIG_GPU
    seqs = int(number(args, "--max-num-seqs") or (1024 if big else 256))
    tokens = number(args, "--max-num-batched-tokens")
    if tokens is None:
        chunked = v1 or at_least(request.version, 0, 8) or switch(args, "--enable-chunked-prefill")
        chunked = chunked or request.context > 32768
        tokens = (8192 if big else 2048) if chunked else max(request.context, 2048)
    return int(tokens), min(seqs, int(tokens))


def peak_activation(request: MemoryRequest, v1: bool) -> int:
    """The profile run's peak: the forward pass of the batch, or the sampler on its logits, the larger."""
    tokens, seqs = profile_batch(request, v1)
    forward = tokens * activation_per_token(request.facts, request.tp)
    sampler = seqs * request.facts.vocab_size * SAMPLER_BYTES_PER_LOGIT
    return max(forward, sampler)


def activation_per_token(facts: ModelFacts, tp: int) -> int:
    """Bytes one token of the dummy batch holds at the MLP, its largest step.

    Dense: gate+up output, the activated half and three hidden-sized buffers: (3 × intermediate / TP
    + 3 × hidden) × 2 bytes (corpus cases 001/002: 2.06 and 2.99 GiB at 20k and 29k tokens, logged 2.07
    and 2.99). MoE layers run `fused_experts` (`fused_moe/fused_moe.py`): per token and chosen expert a
    workspace of max(2 × per-expert width / TP, hidden) and the activated half, plus the shared experts.
    """
    dense = 3 * facts.intermediate_size // tp + 3 * facts.hidden_size
    moe = facts.moe
    if moe is None:
        return dense * BYTES
    width = moe.intermediate_size // tp
    experts = moe.experts_per_token * (max(2 * width, facts.hidden_size) + width)
    routed = experts + 3 * moe.shared_intermediate_size // tp + 3 * facts.hidden_size
    return max(dense if moe.first_dense_layers else 0, routed) * BYTES


def cuda_graph_memory(request: MemoryRequest, v1: bool) -> int:
    """CUDA graphs, profiled before the pool since 0.21: the captured batches' activations, the largest
    of them `max_cudagraph_capture_size` tokens. Earlier builds capture after the pool (outside the claim)."""
    if not v1 or not at_least(request.version, 0, 21) or switch(request.args, "--enforce-eager"):
        return 0
    _, seqs = profile_batch(request, v1)
    return min(2 * seqs, CUDA_GRAPH_CAPTURE) * activation_per_token(request.facts, request.tp)


def _startup_problems(request: MemoryRequest, fraction: float) -> list[str]:
    gpu = request.gpu
    requested = gpu.total_bytes * fraction
    free = gpu.available_bytes - CUDA_CONTEXT
    if requested <= free:
        return []
    return [
        f"vLLM needs {fraction} × {gpu.total_bytes / GIB:.1f} GiB = {requested / GIB:.1f} GiB free at "
        f"startup but {gpu.describe()} has about {free / GIB:.1f} GiB after its CUDA context"
    ]
