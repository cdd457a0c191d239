"""Find the facts for a model reference: a GGUF file, a model folder, the HF cache, or the catalog.

This is the I/O edge of `modelinfo/`: it reads files and nothing else (no network). What is on disk
wins over the catalog, because it is what the engine will load.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

from servestack.modelinfo.catalog import Catalog
from servestack.modelinfo.config import facts_from_config, read_config_file
from servestack.modelinfo.facts import ModelFacts
from servestack.modelinfo.ggufinfo import SPLIT_NAME, gguf_facts
from servestack.modelinfo.safetensorsinfo import model_safetensors, tensor_bytes


def hf_cache_dir(environ: Mapping[str, str], home: Path | None = None) -> Path:
    """Where huggingface_hub keeps downloads, following its own environment variables."""
    if environ.get("HF_HUB_CACHE"):
        return Path(environ["HF_HUB_CACHE"]).expanduser()
    if environ.get("HF_HOME"):
        return Path(environ["HF_HOME"]).expanduser() / "hub"
    cache = Path(environ["XDG_CACHE_HOME"]) if environ.get("XDG_CACHE_HOME") else (home or Path.home()) / ".cache"
    return cache / "huggingface" / "hub"


def find_facts(model: str, *, catalog: Catalog, hf_cache: Path | None = None) -> ModelFacts | None:
    """Facts for `model` (a path or a HF id), or None when neither disk nor catalog knows it.

    Raises ModelInfoError when a file that should describe the model exists but cannot be read.
    """
    path = Path(model).expanduser()
    if path.exists():
        return local_facts(path, model_id=model)
    if hf_cache is not None:
        snapshot = cached_snapshot(hf_cache, model)
        if snapshot is not None:
            return local_facts(snapshot, model_id=model)
    return catalog.facts(model)


def local_facts(path: Path, *, model_id: str) -> ModelFacts | None:
    """Facts from a GGUF file or a model folder (config.json, plus safetensors headers when present)."""
    if path.is_file():
        return gguf_facts(path, model_id=model_id) if path.suffix == ".gguf" else None
    config = path / "config.json"
    if config.is_file():
        facts = facts_from_config(read_config_file(config), model_id=model_id, source=f"config.json: {config}")
        return _with_tensor_bytes(facts, path)
    ggufs = sorted(p for p in path.glob("*.gguf") if not SPLIT_NAME.match(p.name) or "-00001-of-" in p.name)
    return gguf_facts(ggufs[0], model_id=model_id) if ggufs else None


def cached_snapshot(cache: Path, model_id: str) -> Path | None:
    """The snapshot folder of `model_id` in a HF hub cache (`models--org--name/snapshots/<rev>`):
    the revision `refs/main` points at, else the newest snapshot."""
    if model_id.count("/") != 1:
        return None
    repo = cache / ("models--" + model_id.replace("/", "--"))
    snapshots = repo / "snapshots"
    if not snapshots.is_dir():
        return None
    ref = repo / "refs" / "main"
    if ref.is_file():
        pinned = snapshots / ref.read_text().strip()
        if pinned.is_dir():
            return pinned
    candidates = sorted((p for p in snapshots.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    return candidates[-1] if candidates else None


def _with_tensor_bytes(facts: ModelFacts, folder: Path) -> ModelFacts:
    files = model_safetensors(folder)
    if not files:
        return facts
    weights = tensor_bytes(files)
    return dataclasses.replace(
        facts, weight_bytes=weights.bytes, source=f"{facts.source} + {weights.files} safetensors header(s)"
    )
