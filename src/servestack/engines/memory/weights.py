"""How many bytes a model's weights take once an engine loads them, and how TP splits them (engines.md §2.5).

Exact when the files were read (GGUF tensor sizes, safetensors tensor bytes) and the stack does not change
the format. Otherwise every module's parameters (`modelinfo.parameter_groups`) at its stored bits: the
linear layers a quantisation method quantises at the method's bits (`modelinfo/quant.py`), everything it
leaves alone (embeddings, lm_head, norms, routers, the vision tower, the checkpoint's `modules_to_not_convert`)
at the checkpoint's 16 bits; a GGUF that is not here at its mix's types (`modelinfo/ggufmix.py`). A method
servestack does not know is planned at the bits its config states (16 without them) and named in
`unknown_method`: the plan says so as a warning, never a silent 16-bit guess.
"""

from __future__ import annotations

from dataclasses import dataclass

from servestack.gpus import GIB
from servestack.modelinfo import ModelFacts, Quantization, WeightLayout
from servestack.modelinfo.ggufmix import estimate_layout
from servestack.modelinfo.params import parameter_groups
from servestack.modelinfo.quant import is_quantized, quantized_bits

DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4}


@dataclass(frozen=True)
class Weights:
    bytes: int  # the whole model as the engine holds it
    replicated: int  # bytes every TP rank holds whole (norms, MoE routers, MLA's down-projections)
    basis: str  # how the figure was obtained, for the explanation
    unknown_method: str | None = None  # a quantisation servestack has no rule for
    layout: WeightLayout | None = None  # bytes by place (GGUF), for engines that place whole layers

    def per_gpu(self, tp: int) -> int:
        """What one of `tp` tensor-parallel ranks holds: its shard of the split part, all of the replicated one."""
        return self.replicated + -(-(self.bytes - self.replicated) // tp)


def weight_dtype(facts: ModelFacts, dtype: str) -> str:
    """The dtype the engine loads weights in: `auto` keeps a 16-bit checkpoint's and casts float32 to
    bfloat16 (what vLLM and SGLang do)."""
    if dtype != "auto":
        return dtype
    return "bfloat16" if facts.dtype in ("float32", "gguf") else facts.dtype


def model_weights(facts: ModelFacts, *, dtype: str = "auto", quantization: str | None = None) -> Weights:
    """The weight bytes of the whole model as the engine will hold them."""
    if facts.dtype == "gguf":
        return _gguf_weights(facts)
    quant = _quantization(facts, quantization)
    unquantized = DTYPE_BYTES.get(weight_dtype(facts, dtype), 2) * 8
    bits = quantized_bits(quant) if quant else None
    unknown = quant.method if quant is not None and bits is None else None
    if unknown and quant and quant.bits:
        bits = quant.bits
    total = replicated = 0.0
    for group in parameter_groups(facts):
        size = group.parameters * (bits if bits and quant and is_quantized(group, quant) else unquantized) / 8
        total += size
        replicated += size if group.replicated else 0
    if facts.weight_bytes is not None and _format_unchanged(facts, dtype, quantization):
        scale = facts.weight_bytes / total
        basis = f"safetensors tensor bytes ({facts.weight_bytes / GIB:.2f} GiB)"
        return Weights(facts.weight_bytes, int(replicated * scale), basis, unknown)
    return Weights(int(total), int(replicated), _basis(facts, quant, bits, unquantized), unknown)


def _quantization(facts: ModelFacts, quantization: str | None) -> Quantization | None:
    """The checkpoint's quantisation, or the one the stack asks the engine to apply when loading."""
    if quantization is None or quantization == facts.quantization:
        return facts.quant
    return Quantization(method=quantization.lower() if quantization.islower() else quantization)


def _basis(facts: ModelFacts, quant: Quantization | None, bits: float | None, unquantized: int) -> str:
    what = f"{facts.parameters:,} parameters"
    if quant is None:
        return f"{what} × {unquantized // 8} bytes"
    if bits is None:
        return f"{what} × {unquantized // 8} bytes: quantisation {quant.method!r} has no rule here"
    return f"{what}; {quant.method} layers at {bits:.3g} bits, the rest at {unquantized} bits"


def _gguf_weights(facts: ModelFacts) -> Weights:
    if facts.layout is not None:
        return Weights(
            facts.layout.total, 0, f"GGUF tensor bytes ({facts.layout.total / GIB:.2f} GiB)", None, facts.layout
        )
    mix = facts.quantization or "F16"
    layout = estimate_layout(facts, mix)
    if layout is None:
        total = facts.parameters * 2
        return Weights(total, 0, f"{facts.parameters:,} parameters × 2 bytes: GGUF type {mix} has no rule here", mix)
    basis = f"{facts.parameters:,} parameters as llama.cpp's {mix} mix ({layout.total / GIB:.2f} GiB)"
    return Weights(layout.total, 0, basis, None, layout)


def _format_unchanged(facts: ModelFacts, dtype: str, quantization: str | None) -> bool:
    return dtype in ("auto", facts.dtype) and quantization in (None, facts.quantization)
