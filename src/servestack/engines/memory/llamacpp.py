"""llama.cpp's memory rule (llama-server, and llama-cpp-python's server on the same library).

No fraction: each device holds the layers placed on it, their KV cache, and compute buffers.

- Layers (`src/llama-model.cpp` `load_tensors`): of the `n_layer + 1` layers (the blocks, then the output
  layer) the last `-ngl` are offloaded; they are spread over the GPUs by the cumulative `--tensor-split`
  (default: evenly over equal GPUs). The token embedding stays in host memory; a tied output projection
  is a copy of it on the output layer's device.
- KV cache (`src/llama-kv-cache.cpp` `llama_kv_cache`): per layer, on that layer's device, `cells ×
  (K width × K type + V width × V type)`; cells are `-c` (shared by the `--parallel` slots), and since
  the SWA cache (about b5000) a sliding-window layer holds only `n_swa × slots + n_batch` cells (case 009,
  b5452). DeepSeek's MLA cache holds the 576-wide latent since about b5200; older builds cache the full
  per-head K and V (case 014, b4670).
- Compute buffers (`src/llama-context.cpp` `graph_reserve`): the logits of one micro-batch on the output
  device, and without flash attention the attention scores of one layer for the micro-batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from servestack.engines.memory.base import CUDA_CONTEXT, GpuMemory, MemoryBudget, MemoryRequest
from servestack.engines.memory.flags import at_least, number, option, switch
from servestack.engines.memory.weights import Weights, model_weights
from servestack.gpus import Gpu
from servestack.modelinfo import ModelFacts, WeightLayout
from servestack.modelinfo.ggufmix import type_bits

F32 = 4
OFF = ("off", "false", "0")
SWA_CACHE_BUILD = 5000  # approximately: the first builds with a separate sliding-window cache
MLA_CACHE_BUILD = 5200  # approximately: the first builds caching DeepSeek's latent (llama.cpp PR 12801)


@dataclass(frozen=True)
class LlamaCppFlags:
    """How a front end spells the flags that change memory (llama-server's, or llama-cpp-python's names)."""

    gpu_layers: tuple[str, ...] = ("-ngl", "--gpu-layers", "--n-gpu-layers")
    tensor_split: tuple[str, ...] = ("-ts", "--tensor-split")
    cache_k: tuple[str, ...] = ("-ctk", "--cache-type-k")
    cache_v: tuple[str, ...] = ("-ctv", "--cache-type-v")
    batch: tuple[str, ...] = ("-b", "--batch-size")
    ubatch: tuple[str, ...] = ("-ub", "--ubatch-size")
    parallel: tuple[str, ...] = ("-np", "--parallel")
    flash_attn: tuple[str, ...] = ("-fa", "--flash-attn")
    defaults: tuple[int, int] = (2048, 512)  # n_batch, n_ubatch


@dataclass(frozen=True)
class LlamaCppMemory:
    """The rule, with the front end's default context (None: the model's trained context) and flag names."""

    fixed_context: int | None
    flags: LlamaCppFlags = field(default_factory=LlamaCppFlags)
    strict_context = False  # llama.cpp warns and runs past n_ctx_train
    caps_context = False
    start_order = None

    def default_context(self, facts: ModelFacts, args: Sequence[str] = ()) -> int:
        return self.fixed_context or facts.max_context or 4096

    def default_fraction(self, gpu: Gpu, tp: int, facts: ModelFacts | None = None) -> float | None:
        return None

    def budget(self, request: MemoryRequest) -> MemoryBudget:
        facts = request.facts
        weights = model_weights(facts, dtype=request.dtype, quantization=request.quantization)
        placement = self._placement(request)
        claims = [self._claim(request, weights, placement, i) for i in range(len(request.gpus))]
        gpu, weights_on, kv_on, overhead = min(claims, key=lambda c: c[0].available_bytes - sum(c[1:]))
        room = gpu.available_bytes - weights_on - overhead
        memory = GpuMemory(
            total=gpu.total_bytes,
            weights=weights_on,
            kv=kv_on,
            overhead=overhead,
            share=(weights_on + kv_on + overhead) / gpu.total_bytes,
            fraction=None,
            kv_limit=room,
        )
        return MemoryBudget(memory, weights, max(1, -(-kv_on // request.context)) if kv_on else 1)

    def _placement(self, request: MemoryRequest) -> list[int | None]:
        """The device of each block and, last, of the output layer (None: the CPU): `-ngl N` offloads blocks
        from `n_layer − N` on, and the output layer only when N exceeds the blocks."""
        blocks = request.facts.layers
        asked = number(request.args, *self.flags.gpu_layers)
        wanted = blocks + 1 if asked is None or asked < 0 else int(asked)  # none given, or -1: all
        first, offloaded = max(blocks - wanted, 0), min(wanted, blocks + 1)
        split = _split(option(request.args, *self.flags.tensor_split), len(request.gpus))
        return [
            _device(split, (il - first) / offloaded) if first <= il < first + offloaded else None
            for il in range(blocks + 1)
        ]

    def _claim(
        self, request: MemoryRequest, weights: Weights, placement: list[int | None], device: int
    ) -> tuple[Gpu, int, int, int]:
        """(GPU, weights, KV, overhead) on one device."""
        facts = request.facts
        layout = weights.layout or _even_layout(facts, weights.bytes)
        mine = [il for il, where in enumerate(placement[:-1]) if where == device]
        on = sum(layout.layers[il] for il in mine)
        holds_output = placement[-1] == device
        if holds_output:
            on += layout.output or (layout.embedding if facts.tie_word_embeddings else 0)
        kv = sum(self._kv_layer_bytes(request, il) for il in mine)
        overhead = CUDA_CONTEXT + self._compute_buffer(request, holds_output)
        return request.gpus[device], on, kv, overhead

    def _kv_layer_bytes(self, request: MemoryRequest, layer: int) -> int:
        facts, args = request.facts, request.args
        cells = request.context
        if _is_sliding(facts, layer) and at_least(request.version, SWA_CACHE_BUILD):
            slots = int(number(args, *self.flags.parallel) or 1)
            batch = int(number(args, *self.flags.batch) or self.flags.defaults[0])
            cells = min(request.context, (facts.sliding_window or 0) * slots + batch)
        k_width, v_width = _kv_widths(facts, request.version)
        k_type = option(args, *self.flags.cache_k) or _kv_type(request.kv_cache_dtype)
        v_type = option(args, *self.flags.cache_v) or _kv_type(request.kv_cache_dtype)
        return int(cells * (k_width * _type_bytes(k_type) + v_width * _type_bytes(v_type)))

    def _compute_buffer(self, request: MemoryRequest, holds_output: bool) -> int:
        facts = request.facts
        ubatch = int(number(request.args, *self.flags.ubatch) or self.flags.defaults[1])
        logits = ubatch * facts.vocab_size * F32 if holds_output else 0
        flash = switch(request.args, *self.flags.flash_attn) and option(request.args, *self.flags.flash_attn) not in OFF
        scores = 0 if flash else ubatch * request.context * facts.attention_heads * F32
        return logits + scores


def _split(text: str | None, devices: int) -> list[float]:
    """Cumulative fractions of the offloaded layers per device (`-ts 3,10` → [3/13, 1])."""
    parts = [float(p) for p in text.replace(",", " ").split()] if text else []
    weights = (parts + [0.0] * devices)[:devices] if parts else [1.0] * devices
    total = sum(weights) or 1.0
    cumulative, running = [], 0.0
    for weight in weights:
        running += weight / total
        cumulative.append(running)
    return cumulative


def _device(split: list[float], position: float) -> int:
    """llama.cpp's `upper_bound` over the cumulative split."""
    return next((i for i, edge in enumerate(split) if position < edge), len(split) - 1)


def _even_layout(facts: ModelFacts, total: int) -> WeightLayout:
    embedding = facts.vocab_size * facts.hidden_size * total // max(facts.parameters, 1)
    output = 0 if facts.tie_word_embeddings else embedding
    per_layer = (total - embedding - output) // max(facts.layers, 1)
    return WeightLayout(embedding, output, (per_layer,) * facts.layers)


def _is_sliding(facts: ModelFacts, layer: int) -> bool:
    """Gemma-style interleaving: every n-th layer is global, the others slide (all of them when n is 1)."""
    if not facts.sliding_window_layers:
        return False
    if facts.sliding_window_layers >= facts.layers:
        return True
    pattern = round(facts.layers / (facts.layers - facts.sliding_window_layers))
    return (layer + 1) % pattern != 0


def _kv_widths(facts: ModelFacts, version: str | None) -> tuple[int, int]:
    """Values per cell and layer in K and in V."""
    mla = facts.mla
    if mla is None:
        return facts.kv_heads * facts.head_dim, facts.kv_heads * facts.head_dim
    if at_least(version, MLA_CACHE_BUILD):
        return mla.latent_dim, 0
    heads = facts.attention_heads
    return heads * (mla.qk_nope_head_dim + mla.qk_rope_head_dim), heads * mla.v_head_dim


def _kv_type(kv_cache_dtype: str) -> str:
    return {"auto": "f16", "float16": "f16", "bfloat16": "bf16", "float32": "f32"}.get(kv_cache_dtype, kv_cache_dtype)


def _type_bytes(name: str) -> float:
    bits = type_bits(name)
    return 2.0 if bits is None else bits / 8
