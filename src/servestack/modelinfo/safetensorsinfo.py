"""Exact weight bytes from safetensors headers, without loading a tensor.

A safetensors file starts with an 8-byte little-endian header length, then a JSON header mapping each
tensor name to its dtype, shape and byte range. Summing the ranges gives the bytes the weights take;
the file sizes would also count the header and padding.
"""

from __future__ import annotations

import json
import math
import struct
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from servestack.errors import ModelInfoError

MAX_HEADER_BYTES = 100 * 2**20  # the format's own limit

# safetensors dtype → the torch dtype name used in configs
DTYPE_NAMES = {
    "BF16": "bfloat16",
    "F16": "float16",
    "F32": "float32",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2",
}


@dataclass(frozen=True)
class TensorBytes:
    """What the safetensors headers of one model say: total tensor bytes, elements, bytes per dtype."""

    bytes: int
    elements: int
    bytes_by_dtype: dict[str, int]
    files: int

    @property
    def main_dtype(self) -> str:
        """The dtype holding most of the bytes, named as in configs ("bfloat16")."""
        dtype = max(self.bytes_by_dtype, key=lambda d: self.bytes_by_dtype[d])
        return DTYPE_NAMES.get(dtype, dtype.lower())


def read_safetensors_header(path: Path) -> dict[str, Any]:
    """The JSON header of one safetensors file (tensor name → dtype, shape, data_offsets)."""
    try:
        with path.open("rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            if length > MAX_HEADER_BYTES:
                raise ValueError(f"header length {length} is larger than the format allows")
            header = json.loads(f.read(length))
    except (OSError, struct.error, ValueError) as exc:
        raise ModelInfoError(f"{path}: not a readable safetensors file ({exc})") from None
    if not isinstance(header, dict):
        raise ModelInfoError(f"{path}: the safetensors header is not a JSON object")
    header.pop("__metadata__", None)
    return header


def model_safetensors(folder: Path) -> list[Path]:
    """The weight files of a model folder: those named by `model.safetensors.index.json`, else every
    `*.safetensors` file (consolidated duplicates some repos ship beside the shards are skipped)."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (OSError, ValueError, KeyError) as exc:
            raise ModelInfoError(f"{index}: cannot read the shard index ({exc})") from None
        return [folder / name for name in sorted(set(weight_map.values()))]
    return sorted(p for p in folder.glob("*.safetensors") if not p.name.startswith("consolidated"))


def tensor_bytes(files: list[Path]) -> TensorBytes:
    """Add up the tensors of `files` (their headers only)."""
    by_dtype: Counter[str] = Counter()
    elements = 0
    for path in files:
        for name, info in read_safetensors_header(path).items():
            try:
                start, end = info["data_offsets"]
                by_dtype[info["dtype"]] += end - start
                elements += math.prod(info["shape"])
            except (KeyError, TypeError, ValueError):
                raise ModelInfoError(f"{path}: tensor {name!r} has a malformed header entry") from None
    return TensorBytes(bytes=sum(by_dtype.values()), elements=elements, bytes_by_dtype=dict(by_dtype), files=len(files))
