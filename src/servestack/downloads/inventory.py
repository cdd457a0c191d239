"""Every model on this machine, for `servestack models`, `rm`, `models --verify` and bundles.

Where models are found:

    the HF cache      models--ORG--NAME, its current snapshot (refs/main, else the newest): one model per
                      GGUF quant (`ORG/NAME:Q4_K_M`), or one for the repository's weights (`ORG/NAME`)
    pulled folders    `pull --dir` folders and ModelScope folders, from the checksum records
    the models dir    ModelScope's `modelscope/ORG/NAME` folders, and GGUF files anywhere under it
    the stack         its services' local model files and folders (`./x.gguf`, `package:…`)

Only files are read (names, sizes, a model's config.json); nothing is hashed here (verify.py does that).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from servestack.downloads.hub import walk_files
from servestack.downloads.records import RecordStore
from servestack.downloads.selection import quant_of
from servestack.modelinfo import cached_snapshot
from servestack.modelinfo.ggufinfo import SPLIT_NAME
from servestack.stack.models import MODELSCOPE_PREFIX

WEIGHT_SUFFIXES = {
    ".gguf": "gguf",
    ".safetensors": "safetensors",
    ".bin": "pytorch",
    ".pth": "pytorch",
    ".pt": "pytorch",
}
HF_REPO_PREFIX = "models--"


class Place(Enum):
    """Where a model was found, which says how `rm` removes it."""

    HF_CACHE = "HF cache"
    FOLDER = "folder"  # a whole folder of its own (pull --dir, ModelScope, a stack's model folder)
    FILES = "files"  # GGUF files in a folder they share (the models dir, a stack's model file)
    PACKAGE = "Python package"


@dataclass(frozen=True)
class ServiceModel:
    """A stack service's model: as the stack file writes it (loaded), and as its engine is given it."""

    written: str
    resolved: str


@dataclass(frozen=True)
class LocalModel:
    """One model on disk: `files` (relative to `folder`) are its files; `size` counts each blob once."""

    name: str
    format: str  # gguf, safetensors, pytorch, or "" when the folder holds no weights servestack knows
    quant: str | None
    folder: Path
    files: tuple[str, ...]
    size: int
    place: Place
    repo_id: str | None = None
    used_by: tuple[str, ...] = field(default=())

    @property
    def location(self) -> Path:
        """The file (a single-file model) or the folder it is in."""
        return self.folder / self.files[0] if self.place is not Place.FOLDER and len(self.files) == 1 else self.folder

    def serves(self, model: str) -> bool:
        """Whether an engine given `model` (a path or a hub id, as resolved for it) loads this model."""
        whole = self.format != "gguf"  # a GGUF repository holds several models, one per quant
        if model == self.repo_id and whole:
            return True
        path = Path(model)
        if not path.is_absolute():
            return False
        return (whole and path == self.folder) or path in {self.folder / f for f in self.files}


def find_models(
    *, hf_cache: Path, models_dir: Path, records: RecordStore, stack_models: Mapping[str, ServiceModel]
) -> list[LocalModel]:
    """Every model found, each once (by its folder or file), with the stack's services that use it.

    `stack_models`: each service of the stack → its model (resolved as in downloads/resolve.py).
    """
    found = [*_hf_cache(hf_cache), *_folders(records, models_dir, hf_cache), *_gguf_files(models_dir)]
    found += _stack_paths(stack_models, found)
    return [_with_users(m, stack_models) for m in found]


def _hf_cache(cache: Path) -> Iterable[LocalModel]:
    if not cache.is_dir():
        return
    for repo in sorted(cache.glob(HF_REPO_PREFIX + "*")):
        repo_id = repo.name.removeprefix(HF_REPO_PREFIX).replace("--", "/", 1)
        snapshot = cached_snapshot(cache, repo_id)
        if snapshot is not None:
            yield from _split_by_quant(repo_id, snapshot, [f.path for f in walk_files(snapshot)], Place.HF_CACHE)


def _split_by_quant(name: str, folder: Path, paths: Sequence[str], place: Place) -> Iterable[LocalModel]:
    """One model per GGUF quant in `paths`, or one for the weights (with every file) when there is no GGUF."""
    ggufs = [p for p in paths if p.lower().endswith(".gguf") and not Path(p).name.lower().startswith("mmproj")]
    if not ggufs:
        yield _model(name, folder, paths, place, repo_id=name)
        return
    quants: dict[str | None, list[str]] = {}
    for path in ggufs:
        quants.setdefault(quant_of(path), []).append(path)
    for quant, files in quants.items():
        label = f"{name}:{quant}" if quant else name
        yield _model(label, folder, files, place, repo_id=name, quant=quant)


def _folders(records: RecordStore, models_dir: Path, hf_cache: Path) -> Iterable[LocalModel]:
    """Folders pulled outside the HF cache (recorded), and ModelScope folders in the models dir."""
    seen: set[Path] = set()
    for record in records.all():
        folder = Path(record.location)
        if folder.is_dir() and not folder.is_relative_to(hf_cache) and folder not in seen:
            seen.add(folder)
            name = record.source if record.source.startswith(MODELSCOPE_PREFIX) else str(folder)
            yield _model(name, folder, [f.path for f in walk_files(folder, skip=(".cache",))], Place.FOLDER)
    modelscope = models_dir / "modelscope"
    for folder in sorted(p for p in modelscope.glob("*/*") if p.is_dir() and p not in seen):
        repo_id = folder.relative_to(modelscope).as_posix()
        paths = [f.path for f in walk_files(folder, skip=(".cache", "._____temp", ".msc", ".mv"))]
        yield _model(MODELSCOPE_PREFIX + repo_id, folder, paths, Place.FOLDER, repo_id=repo_id)


def _gguf_files(models_dir: Path) -> Iterable[LocalModel]:
    """GGUF files anywhere under the models dir but its ModelScope folders (a split model once)."""
    if not models_dir.is_dir():
        return
    for folder, dirs, names in os.walk(models_dir):
        if Path(folder) == models_dir:
            dirs[:] = [d for d in dirs if d != "modelscope"]
        for name in sorted(names):
            split = SPLIT_NAME.match(name)
            if not name.lower().endswith(".gguf") or (split and split["part"] != "00001"):
                continue
            parts = [n for n in names if split and n.startswith(split["stem"] + "-")] if split else [name]
            path = Path(folder) / name
            yield _model(str(path.relative_to(models_dir)), Path(folder), sorted(parts), Place.FILES)


def _stack_paths(stack_models: Mapping[str, ServiceModel], found: Sequence[LocalModel]) -> Iterable[LocalModel]:
    """The stack's local model files and folders that no other place listed, named as the stack writes them."""
    listed: set[str] = set()
    for model in stack_models.values():
        path = Path(model.resolved)
        if not path.is_absolute() or not path.exists() or model.resolved in listed:
            continue
        if any(m.serves(model.resolved) for m in found):
            continue
        listed.add(model.resolved)
        place = Place.PACKAGE if "site-packages" in path.parts or "dist-packages" in path.parts else None
        if path.is_dir():
            yield _model(model.written, path, [f.path for f in walk_files(path)], place or Place.FOLDER)
        else:
            yield _model(model.written, path.parent, [path.name], place or Place.FILES, quant=quant_of(path.name))


def _model(
    name: str,
    folder: Path,
    paths: Sequence[str],
    place: Place,
    *,
    repo_id: str | None = None,
    quant: str | None = None,
) -> LocalModel:
    kinds = [WEIGHT_SUFFIXES[s] for p in paths if (s := Path(p).suffix.lower()) in WEIGHT_SUFFIXES]
    fmt = next((k for k in ("gguf", "safetensors", "pytorch") if k in kinds), "")
    if fmt == "gguf" and quant is None:
        quant = next((q for p in paths if (q := quant_of(p))), None)
    elif fmt != "gguf":
        quant = _checkpoint_quant(folder / "config.json")
    return LocalModel(name, fmt, quant, folder, tuple(paths), _size(folder, paths), place, repo_id)


def _checkpoint_quant(config: Path) -> str | None:
    """A checkpoint's quantisation method, else its dtype, as its config.json says (BF16, FP8, AWQ…)."""
    try:
        data = json.loads(config.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    quant = data.get("quantization_config")
    method = quant.get("quant_method") if isinstance(quant, dict) else None
    dtype = data.get("torch_dtype") or data.get("dtype")
    shown = {"bfloat16": "BF16", "float16": "F16", "float32": "F32"}
    return str(method).upper() if method else shown.get(str(dtype)) if dtype else None


def _size(folder: Path, paths: Sequence[str]) -> int:
    """Bytes on disk, each blob once (the HF cache's snapshot files are links into `blobs/`)."""
    blobs = {}
    for path in paths:
        target = (folder / path).resolve()
        try:
            blobs[target] = target.stat().st_size
        except OSError:
            continue
    return sum(blobs.values())


def _with_users(model: LocalModel, stack_models: Mapping[str, ServiceModel]) -> LocalModel:
    users = tuple(name for name, used in stack_models.items() if model.serves(used.resolved))
    return dataclasses.replace(model, used_by=users) if users else model
