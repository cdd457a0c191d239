"""Finding facts for a model reference: a path, the HF cache, the catalog."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from modelinfo_fixtures import load_reference

from servestack.modelinfo import Catalog, cached_snapshot, find_facts, hf_cache_dir


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"HF_HUB_CACHE": "/c/hub"}, "/c/hub"),
        ({"HF_HOME": "/h", "HF_HUB_CACHE": ""}, "/h/hub"),
        ({"XDG_CACHE_HOME": "/x"}, "/x/huggingface/hub"),
        ({}, "/home/u/.cache/huggingface/hub"),
    ],
)
def test_hf_cache_dir_follows_huggingface_hub(environ: dict[str, str], expected: str) -> None:
    assert hf_cache_dir(environ, home=Path("/home/u")) == Path(expected)


def _cache_with(tmp_path: Path, model_id: str, config: dict[str, object]) -> Path:
    repo = tmp_path / ("models--" + model_id.replace("/", "--"))
    snapshot = repo / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text(json.dumps(config))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    return snapshot


def test_a_model_in_the_hf_cache_is_read_from_disk(tmp_path: Path) -> None:
    config = {**load_reference()["meta-llama/Llama-3.1-8B-Instruct"], "max_position_embeddings": 8192}
    snapshot = _cache_with(tmp_path, "meta-llama/Llama-3.1-8B-Instruct", config)
    assert cached_snapshot(tmp_path, "meta-llama/Llama-3.1-8B-Instruct") == snapshot
    facts = find_facts("meta-llama/Llama-3.1-8B-Instruct", catalog=Catalog.builtin(), hf_cache=tmp_path)
    assert facts is not None
    assert facts.max_context == 8192  # disk wins over the catalog
    assert facts.source.startswith("config.json")


def test_the_catalog_answers_when_nothing_is_on_disk(tmp_path: Path) -> None:
    facts = find_facts("zai-org/GLM-4.7", catalog=Catalog.builtin(), hf_cache=tmp_path)
    assert facts is not None and facts.source == "built-in catalog"
    assert find_facts("someone/unknown", catalog=Catalog.builtin(), hf_cache=tmp_path) is None


def test_a_gguf_path_and_a_folder_holding_one(tiny_gguf: Path, tmp_path: Path) -> None:
    assert find_facts(str(tiny_gguf), catalog=Catalog.builtin()) is not None
    folder = tmp_path / "folder"
    folder.mkdir()
    shutil.copy(tiny_gguf, folder / "model.gguf")
    facts = find_facts(str(folder), catalog=Catalog.builtin())
    assert facts is not None and facts.layers == 2
