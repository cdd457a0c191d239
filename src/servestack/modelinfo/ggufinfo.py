"""Facts from a GGUF file's header: architecture metadata, tensor count, quantisation, and the file size.

The header is walked directly with the `gguf` package's type tables: `gguf.GGUFReader` builds numpy
views of every metadata array (a 150k-entry vocabulary takes seconds), while the planner only needs
scalars, array lengths and tensor shapes and types. Weight bytes are the tensors' data, counted by place
(embedding, output, each block: `WeightLayout`), since llama.cpp places them by layer; a split model
(`-00001-of-00003.gguf`) counts every part.
"""

from __future__ import annotations

import dataclasses
import math
import mmap
import re
import struct
from pathlib import Path
from typing import Any

from gguf import GGML_QUANT_SIZES, GGUF_MAGIC, GGMLQuantizationType, GGUFValueType, LlamaFileType

from servestack.errors import ModelInfoError
from servestack.modelinfo.facts import MLA, ModelFacts, MoE, WeightLayout
from servestack.modelinfo.families import SWA_PATTERNS

SCALAR_FORMATS = {
    GGUFValueType.UINT8: "B",
    GGUFValueType.INT8: "b",
    GGUFValueType.UINT16: "H",
    GGUFValueType.INT16: "h",
    GGUFValueType.UINT32: "I",
    GGUFValueType.INT32: "i",
    GGUFValueType.FLOAT32: "f",
    GGUFValueType.BOOL: "?",
    GGUFValueType.UINT64: "Q",
    GGUFValueType.INT64: "q",
    GGUFValueType.FLOAT64: "d",
}
SPLIT_NAME = re.compile(r"^(?P<stem>.*)-(?P<part>\d{5})-of-(?P<count>\d{5})\.gguf$")
BLOCK = re.compile(r"^blk\.(\d+)\.")


@dataclasses.dataclass(frozen=True)
class GgufHeader:
    """Metadata (arrays become their length), tensor shapes and ggml types of one GGUF file."""

    metadata: dict[str, Any]
    tensors: dict[str, tuple[int, ...]]
    types: dict[str, int] = dataclasses.field(default_factory=dict)  # tensor → ggml type id

    @property
    def parameters(self) -> int:
        return sum(math.prod(shape) for shape in self.tensors.values())

    def tensor_bytes(self, name: str) -> int:
        """The bytes of one tensor's data (its elements in blocks of its ggml type)."""
        block, size = GGML_QUANT_SIZES[GGMLQuantizationType(self.types[name])]
        return math.prod(self.tensors[name]) // block * size


def read_gguf_header(path: Path) -> GgufHeader:
    try:
        with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return _HeaderReader(data).read()
    except (OSError, struct.error, ValueError, UnicodeDecodeError) as exc:
        raise ModelInfoError(f"{path}: not a readable GGUF file ({exc})") from None


def gguf_facts(path: Path, *, model_id: str | None = None) -> ModelFacts:
    """Facts from the GGUF at `path` (for a split model, any of its parts)."""
    header = read_gguf_header(path)
    parts = _split_parts(path, header)
    headers = [header, *(read_gguf_header(p) for p in parts if p != path)]
    parameters = sum(h.parameters for h in headers)
    meta = _Meta(header.metadata)
    heads = meta.arch_int("attention.head_count")
    hidden = meta.arch_int("embedding_length")
    return ModelFacts(
        model_id=model_id or path.name,
        source=f"gguf: {path}",
        architecture=meta.arch,
        model_type=meta.arch,
        layers=meta.arch_int("block_count"),
        hidden_size=hidden,
        attention_heads=heads,
        kv_heads=meta.arch_int("attention.head_count_kv", heads),
        head_dim=meta.arch_int("attention.key_length", hidden // heads if heads else 0),
        vocab_size=meta.arch_int("vocab_size", int(meta.get("tokenizer.ggml.tokens", 0))),
        intermediate_size=meta.arch_int("feed_forward_length", 0),
        parameters=parameters,
        dtype="gguf",
        max_context=meta.arch_int("context_length", 0) or None,
        quantization=_file_type_name(meta.get("general.file_type")),
        weight_bytes=(layout := _layout(headers, meta.arch_int("block_count"))).total,
        layout=layout,
        moe=_moe(meta),
        mla=_mla(meta),
        tie_word_embeddings="output.weight" not in header.tensors,
        sliding_window=meta.arch_int("attention.sliding_window", 0) or None,
        sliding_window_layers=_sliding_layers(meta),
    )


def _sliding_layers(meta: _Meta) -> int:
    if not meta.arch_int("attention.sliding_window", 0):
        return 0
    layers = meta.arch_int("block_count")
    pattern = meta.arch_int("attention.sliding_window_pattern", 0) or SWA_PATTERNS.get(meta.arch, 0)
    return layers - layers // pattern if pattern else layers


def _layout(headers: list[GgufHeader], blocks: int) -> WeightLayout:
    """Tensor bytes by place: the token embedding, the output projection, each block, the rest."""
    layers = [0] * blocks
    embedding = output = other = 0
    for header in headers:
        for name in header.tensors:
            size = header.tensor_bytes(name)
            block = BLOCK.match(name)
            if name == "token_embd.weight":
                embedding += size
            elif name == "output.weight":
                output += size
            elif block and int(block[1]) < blocks:
                layers[int(block[1])] += size
            else:
                other += size
    return WeightLayout(embedding, output, tuple(layers), other)


class _Meta:
    """Typed access to `{arch}.*` keys; per-layer arrays (some models vary heads per layer) read as their max."""

    def __init__(self, metadata: dict[str, Any]) -> None:
        self.metadata = metadata
        self.arch = str(metadata.get("general.architecture", ""))
        if not self.arch:
            raise ModelInfoError("the GGUF header has no general.architecture")

    def get(self, key: str, default: Any = None) -> Any:
        return self.metadata.get(key, default)

    def arch_int(self, key: str, default: int | None = None) -> int:
        value = self.metadata.get(f"{self.arch}.{key}", default)
        if value is None:
            raise ModelInfoError(f"the GGUF header has no {self.arch}.{key}")
        return int(max(value) if isinstance(value, list) else value)


def _moe(meta: _Meta) -> MoE | None:
    experts = meta.arch_int("expert_count", 0)
    if not experts:
        return None
    per_expert = meta.arch_int("expert_feed_forward_length", 0) or meta.arch_int("feed_forward_length", 0)
    shared = meta.arch_int("expert_shared_feed_forward_length", 0) or per_expert * meta.arch_int(
        "expert_shared_count", 0
    )
    return MoE(
        experts=experts,
        experts_per_token=meta.arch_int("expert_used_count", 2),
        intermediate_size=per_expert,
        shared_intermediate_size=shared,
        first_dense_layers=meta.arch_int("leading_dense_block_count", 0),
    )


def _mla(meta: _Meta) -> MLA | None:
    rank = meta.arch_int("attention.kv_lora_rank", 0)
    if not rank:
        return None
    rope = meta.arch_int("rope.dimension_count", 64)
    return MLA(
        kv_lora_rank=rank,
        qk_rope_head_dim=rope,
        qk_nope_head_dim=meta.arch_int("attention.key_length", rope + 128) - rope,
        v_head_dim=meta.arch_int("attention.value_length", 128),
        q_lora_rank=meta.arch_int("attention.q_lora_rank", 0) or None,
    )


def _file_type_name(value: Any) -> str | None:
    if value is None:
        return None
    try:
        name = LlamaFileType(int(value)).name
    except ValueError:
        return f"file_type {value}"
    return name.removeprefix("MOSTLY_").removeprefix("ALL_")


def _split_parts(path: Path, header: GgufHeader) -> list[Path]:
    match = SPLIT_NAME.match(path.name)
    if not match or int(header.metadata.get("split.count", 1)) <= 1:
        return [path]
    count = int(match["count"])
    parts = [path.with_name(f"{match['stem']}-{i:05d}-of-{count:05d}.gguf") for i in range(1, count + 1)]
    missing = [p.name for p in parts if not p.is_file()]
    if missing:
        raise ModelInfoError(f"{path}: split GGUF is missing {', '.join(missing)}")
    return parts


class _HeaderReader:
    """Walks a GGUF v2/v3 header, mapped in memory: metadata key/values, then tensor infos."""

    def __init__(self, data: mmap.mmap) -> None:
        self.data = data
        self.pos = 0
        self.order = "<"

    def read(self) -> GgufHeader:
        magic, version = self._unpack("II")
        if magic != GGUF_MAGIC:
            raise ValueError("bad magic")
        if version & 0xFFFF == 0:  # written big-endian
            self.order, version = ">", struct.unpack(">I", struct.pack("<I", version))[0]
        if version < 2:
            raise ValueError(f"GGUF version {version} is too old")
        tensor_count, kv_count = self._unpack("QQ")
        metadata = {self._string(): self._value(GGUFValueType(self._unpack("I")[0])) for _ in range(kv_count)}
        infos = [self._tensor() for _ in range(tensor_count)]
        return GgufHeader(metadata, {name: shape for name, shape, _ in infos}, {name: kind for name, _, kind in infos})

    def _bytes(self, n: int) -> bytes:
        start, self.pos = self.pos, self.pos + n
        if self.pos > len(self.data):
            raise ValueError("truncated header")
        return self.data[start : self.pos]

    def _unpack(self, fmt: str) -> tuple[Any, ...]:
        fmt = self.order + fmt
        return struct.unpack(fmt, self._bytes(struct.calcsize(fmt)))

    def _string(self) -> str:
        (length,) = self._unpack("Q")
        return self._bytes(length).decode()

    def _skip_strings(self, count: int) -> None:
        # The vocabulary and merges are ~100k strings: walk their lengths without a slice each.
        length_at = struct.Struct(self.order + "Q").unpack_from
        data, pos = self.data, self.pos
        for _ in range(count):
            pos += 8 + length_at(data, pos)[0]
        if pos > len(data):
            raise ValueError("truncated header")
        self.pos = pos

    def _value(self, kind: GGUFValueType) -> Any:
        if kind is GGUFValueType.STRING:
            return self._string()
        if kind is GGUFValueType.ARRAY:
            return self._array()
        return self._unpack(SCALAR_FORMATS[kind])[0]

    def _array(self) -> Any:
        """Numeric arrays are read (per-layer head counts); string arrays become their length."""
        item, count = self._unpack("IQ")
        kind = GGUFValueType(item)
        if kind is GGUFValueType.STRING:
            self._skip_strings(count)
            return count
        if kind is GGUFValueType.ARRAY:
            return [self._array() for _ in range(count)]
        fmt = SCALAR_FORMATS[kind]
        values = list(self._unpack(f"{count}{fmt}"))
        return values if count <= 4096 else count

    def _tensor(self) -> tuple[str, tuple[int, ...], int]:
        name = self._string()
        (dims,) = self._unpack("I")
        shape = self._unpack(f"{dims}Q")
        kind, _offset = self._unpack("IQ")
        return name, tuple(int(d) for d in shape), int(kind)
