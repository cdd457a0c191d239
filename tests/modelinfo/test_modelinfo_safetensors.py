"""Exact weight bytes from safetensors headers, without loading tensors."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from modelinfo_fixtures import load_reference, write_safetensors

from servestack.errors import ModelInfoError
from servestack.modelinfo import local_facts, model_safetensors, read_safetensors_header, tensor_bytes


def test_tensor_bytes_add_up_the_header_ranges(tmp_path: Path) -> None:
    written = write_safetensors(tmp_path / "model.safetensors", {"a": ("BF16", (4, 8)), "b": ("F32", (3,))})
    weights = tensor_bytes([tmp_path / "model.safetensors"])
    assert weights.bytes == written == 4 * 8 * 2 + 3 * 4
    assert weights.elements == 35
    assert weights.bytes_by_dtype == {"BF16": 64, "F32": 12}
    assert weights.main_dtype == "bfloat16"
    assert weights.bytes < (tmp_path / "model.safetensors").stat().st_size  # header not counted


def test_shards_come_from_the_index(tmp_path: Path) -> None:
    one = write_safetensors(tmp_path / "model-00001-of-00002.safetensors", {"a": ("BF16", (10, 10))})
    two = write_safetensors(tmp_path / "model-00002-of-00002.safetensors", {"b": ("BF16", (5, 10))})
    write_safetensors(tmp_path / "consolidated.safetensors", {"a": ("BF16", (10, 10)), "b": ("BF16", (5, 10))})
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    files = model_safetensors(tmp_path)
    assert [f.name for f in files] == ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    assert tensor_bytes(files).bytes == one + two


def test_a_model_folder_combines_config_and_exact_bytes(tmp_path: Path) -> None:
    config = load_reference()["Qwen/Qwen2.5-0.5B-Instruct"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    written = write_safetensors(tmp_path / "model.safetensors", {"w": ("BF16", (1000, 1000))})
    facts = local_facts(tmp_path, model_id="qwen-local")
    assert facts is not None
    assert facts.weight_bytes == written
    assert facts.parameters == config["_computed"]["total_params"]  # from the config, not the tensors
    assert "safetensors" in facts.source


def test_a_broken_header_is_a_model_info_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.safetensors"
    path.write_bytes(struct.pack("<Q", 50) + b"{not json")
    with pytest.raises(ModelInfoError, match="not a readable safetensors"):
        read_safetensors_header(path)
