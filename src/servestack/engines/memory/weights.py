"""How many bytes a model's weights take once loaded (reference/engines.md §2.5).

Exact when the files were read (GGUF file size, safetensors tensor bytes) and the stack does not
change the format; otherwise parameters × bytes per parameter, with quantised linear layers at their
bits per weight and the embeddings / LM head kept 16-bit.
"""

from __future__ import annotations

from dataclasses import dataclass

from servestack.modelinfo import ModelFacts

DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4}

# Bits per weight of the quantised linear layers, scales included (group-128 int4: 4 bits + 16-bit
# scale and zero per 128 weights ≈ 4.25). Embeddings and the LM head stay 16-bit.
QUANT_BITS = {
    "fp8": 8.0,
    "w8a8_fp8": 8.0,
    "w8a8_int8": 8.0,
    "int8": 8.0,
    "awq": 4.25,
    "awq_marlin": 4.25,
    "gptq": 4.25,
    "gptq_marlin": 4.25,
    "marlin": 4.25,
    "moe_wna16": 4.25,
    "mxfp4": 4.25,
    "modelopt_fp4": 4.5,
    "bitsandbytes": 4.5,
}


@dataclass(frozen=True)
class Weights:
    bytes: int
    basis: str  # how the figure was obtained, for the explanation


def weight_dtype(facts: ModelFacts, dtype: str) -> str:
    """The dtype the engine loads weights in: `auto` keeps a 16-bit checkpoint's and casts float32 to
    bfloat16 (what vLLM and SGLang do)."""
    if dtype != "auto":
        return dtype
    return "bfloat16" if facts.dtype in ("float32", "gguf") else facts.dtype


def model_weights(facts: ModelFacts, *, dtype: str = "auto", quantization: str | None = None) -> Weights:
    """The weight bytes of the whole model as the engine will hold them."""
    if facts.weight_bytes is not None and _format_unchanged(facts, dtype, quantization):
        return Weights(facts.weight_bytes, f"{_file_kind(facts)} ({facts.weight_bytes / 2**30:.2f} GiB)")
    method = quantization or facts.quantization
    if method in QUANT_BITS:
        linear = facts.parameters - facts.embedding_parameters
        total = int(linear * QUANT_BITS[method] / 8) + facts.embedding_parameters * 2
        bits = QUANT_BITS[method]
        return Weights(total, f"{facts.parameters:,} parameters, {method} at {bits} bits, embeddings 16-bit")
    loaded = weight_dtype(facts, dtype)
    size = DTYPE_BYTES.get(loaded, 2)
    basis = f"{facts.parameters:,} parameters × {size} bytes ({loaded})"
    if method is not None:
        basis += f"; quantisation {method!r} is not in the table, assumed 16-bit"
    return Weights(facts.parameters * size, basis)


def _format_unchanged(facts: ModelFacts, dtype: str, quantization: str | None) -> bool:
    if facts.dtype == "gguf":
        return True
    return dtype in ("auto", facts.dtype) and quantization in (None, facts.quantization)


def _file_kind(facts: ModelFacts) -> str:
    return "GGUF file size" if facts.dtype == "gguf" else "safetensors tensor bytes"
