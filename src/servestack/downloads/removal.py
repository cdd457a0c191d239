"""`servestack rm MODEL` (and Ollama's /api/delete): which model a name means, and removing its files.

A name is what `servestack models` shows (`ORG/NAME:Q4_K_M`, `modelscope:ORG/NAME`, a path), a hub id
or a short name (`qwen2.5-coder:32b-q5_k_m`). Removing a model that a running service uses is refused
(the caller says which services run it); a model shipped inside a Python package is pip's to remove.
In the HF cache, a GGUF quant's links and blobs go (a blob another snapshot still links to stays), and
the whole repository folder goes with its last model.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence

from servestack.downloads.inventory import LocalModel, Place
from servestack.downloads.records import RecordStore
from servestack.downloads.reference import parse_reference
from servestack.errors import DownloadError, StateError


def find_model(name: str, models: Sequence[LocalModel]) -> LocalModel:
    """The one model `name` means; DownloadError when it means none or several."""
    matches = [m for m in models if name in (m.name, str(m.location))] or _by_reference(name, models)
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise DownloadError(f"no model {name!r} on this machine", fix="`servestack models` lists them by name")
    raise DownloadError(
        f"{name!r} names {len(matches)} models: {', '.join(m.name for m in matches)}", fix="name one of them"
    )


def remove_model(model: LocalModel, records: RecordStore, *, users: Sequence[str] = ()) -> int:
    """Delete `model`'s files; the bytes freed. StateError while `users` (running services) use it."""
    if users:
        names = ", ".join(users)
        raise StateError(
            f"{model.name} is in use by the running service{'s' if len(users) > 1 else ''} {names}",
            fix=" and ".join(f"`servestack stop {u}`" for u in users) + " first, then remove the model",
        )
    if model.place is Place.PACKAGE:
        raise DownloadError(
            f"{model.name} ships inside an installed Python package", fix="pip uninstall the package that holds it"
        )
    if model.place is Place.HF_CACHE:
        _remove_from_hf_cache(model)
    elif model.place is Place.FOLDER:
        shutil.rmtree(model.folder)
    else:
        for path in model.files:
            (model.folder / path).unlink(missing_ok=True)
    records.forget(model.folder, model.files)
    return model.size


def _by_reference(name: str, models: Sequence[LocalModel]) -> list[LocalModel]:
    """The models a hub id or short name means, in either format (`qwen2.5-coder:32b` may be either)."""
    found: list[LocalModel] = []
    for formats in (("gguf",), ("safetensors",)):
        try:
            reference = parse_reference(name, formats)
        except DownloadError:
            continue
        found += [
            m
            for m in models
            if m.repo_id == reference.repo_id and reference.quant in (None, m.quant) and m not in found
        ]
    return found


def _remove_from_hf_cache(model: LocalModel) -> None:
    snapshot = model.folder
    repo = snapshot.parent.parent  # models--ORG--NAME/snapshots/COMMIT
    others = [
        p
        for p in snapshot.rglob("*")
        if p.suffix.lower() == ".gguf" and p.relative_to(snapshot).as_posix() not in model.files
    ]
    if model.format != "gguf" or not others:
        shutil.rmtree(repo)
        return
    for path in model.files:
        link = snapshot / path
        target = link.resolve()
        link.unlink(missing_ok=True)
        if not any(p.is_symlink() and p.resolve() == target for p in repo.glob("snapshots/**/*")):
            target.unlink(missing_ok=True)  # no other snapshot links to the blob
