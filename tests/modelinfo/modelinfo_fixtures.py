"""Test data for modelinfo tests: the reference HF configs, and writers for tiny GGUF and safetensors files."""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGUFWriter, LlamaFileType

REFERENCE = Path(__file__).parent / "data" / "model_configs.json"

# A tiny Llama: 2 layers, hidden 64, 4 heads (head dim 16), 2 KV heads, MLP 128, vocabulary 100.
TINY = {"layers": 2, "hidden": 64, "heads": 4, "kv_heads": 2, "ffn": 128, "vocab": 100, "context": 512}


def load_reference() -> dict[str, dict[str, Any]]:
    return json.loads(REFERENCE.read_text())


def tiny_llama_tensors(tied: bool = True) -> dict[str, np.ndarray]:
    t = TINY
    kv_width = t["kv_heads"] * t["hidden"] // t["heads"]
    tensors = {"token_embd.weight": np.zeros((t["vocab"], t["hidden"]), dtype=np.float32)}
    for i in range(t["layers"]):
        tensors |= {
            f"blk.{i}.attn_q.weight": np.zeros((t["hidden"], t["hidden"]), dtype=np.float16),
            f"blk.{i}.attn_k.weight": np.zeros((kv_width, t["hidden"]), dtype=np.float16),
            f"blk.{i}.attn_v.weight": np.zeros((kv_width, t["hidden"]), dtype=np.float16),
            f"blk.{i}.attn_output.weight": np.zeros((t["hidden"], t["hidden"]), dtype=np.float16),
            f"blk.{i}.ffn_gate.weight": np.zeros((t["ffn"], t["hidden"]), dtype=np.float16),
            f"blk.{i}.ffn_up.weight": np.zeros((t["ffn"], t["hidden"]), dtype=np.float16),
            f"blk.{i}.ffn_down.weight": np.zeros((t["hidden"], t["ffn"]), dtype=np.float16),
            f"blk.{i}.attn_norm.weight": np.ones(t["hidden"], dtype=np.float32),
            f"blk.{i}.ffn_norm.weight": np.ones(t["hidden"], dtype=np.float32),
        }
    tensors["output_norm.weight"] = np.ones(t["hidden"], dtype=np.float32)
    if not tied:
        tensors["output.weight"] = np.zeros((t["vocab"], t["hidden"]), dtype=np.float16)
    return tensors


def write_tiny_gguf(
    path: Path, *, tied: bool = True, split_max_tensors: int = 0, extra: Mapping[str, int] | None = None
) -> Path:
    """A tiny Llama GGUF written with the gguf package's own writer."""
    t = TINY
    writer = GGUFWriter(path, "llama", split_max_tensors=split_max_tensors)
    writer.add_name("tiny-llama")
    writer.add_block_count(t["layers"])
    writer.add_context_length(t["context"])
    writer.add_embedding_length(t["hidden"])
    writer.add_feed_forward_length(t["ffn"])
    writer.add_head_count(t["heads"])
    writer.add_head_count_kv(t["kv_heads"])
    writer.add_file_type(LlamaFileType.MOSTLY_F16)
    writer.add_token_list([f"tok{i}" for i in range(t["vocab"])])
    for key, value in (extra or {}).items():
        writer.add_uint32(key, value)
    for name, array in tiny_llama_tensors(tied).items():
        writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


SAFETENSORS_DTYPES = {"BF16": 2, "F16": 2, "F32": 4, "I32": 4, "F8_E4M3": 1}


def write_safetensors(path: Path, tensors: Mapping[str, tuple[str, tuple[int, ...]]]) -> int:
    """Write a safetensors file of zero tensors {name: (dtype, shape)}; returns the tensor bytes."""
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, (dtype, shape) in tensors.items():
        size = SAFETENSORS_DTYPES[dtype] * int(np.prod(shape))
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(offset))
    return offset
