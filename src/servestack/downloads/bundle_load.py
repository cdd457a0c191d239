"""`servestack bundle load FILE`: put a bundle's stack file, weights and venvs in place, with no network.

Each member streams to a `.partial` file beside its place, hashed on the way; only a file whose SHA-256
matches the manifest is renamed into place, so a damaged bundle is an error naming the file and leaves
no damaged file behind. Hub models go into the HF cache's layout (blobs, `snapshots/COMMIT` links,
`refs/REVISION`), where engines and `servestack` find them by id with no hub; the files are recorded
as checked against the bundle's manifest (`models --verify` checks them later). Then each venv the
bundle carries wheels for is created with `pip install --no-index`.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from pydantic import ValidationError

from servestack.downloads.bundle_manifest import (
    FORMAT,
    MANIFEST,
    VERSION,
    BundleFile,
    BundleModel,
    BundleVenv,
    Manifest,
    Placement,
)
from servestack.downloads.records import CHECKED_BUNDLE, FileRecord, RecordStore
from servestack.downloads.space import check_disk_space
from servestack.downloads.wheels import build_venv
from servestack.errors import DownloadError

CHUNK = 4 * 1024 * 1024


@dataclass
class Loaded:
    manifest: Manifest
    stack_file: Path
    models: list[tuple[BundleModel, Path]] = field(default_factory=list)  # each model and where it now is
    venvs: list[tuple[BundleVenv, Path, bool]] = field(default_factory=list)  # built (False: was there)


@dataclass(frozen=True)
class _Target:
    """Where one member goes; `owner` is its model or venv."""

    path: Path
    file: BundleFile
    owner: BundleModel | BundleVenv


def load_bundle(
    bundle: Path,
    *,
    stack_dir: Path,
    hf_cache: Path,
    models_dir: Path,
    records: RecordStore,
    progress: Callable[[int], None] = lambda n: None,
) -> Loaded:
    """Load `bundle` (its stack file into `stack_dir`); DownloadError naming the file that does not match."""
    with tempfile.TemporaryDirectory(prefix="servestack-wheels-") as scratch:
        try:
            with tarfile.open(bundle, "r|") as tar:
                loaded = _extract(tar, bundle, stack_dir, hf_cache, models_dir, Path(scratch), progress)
        except (tarfile.TarError, EOFError) as exc:
            raise DownloadError(f"{bundle} is not a complete servestack bundle: {exc}") from None
        for model, folder in loaded.models:
            _finish_model(model, folder, hf_cache, records, bundle.name)
        for number, venv in enumerate(loaded.manifest.venvs):
            loaded.venvs.append(_build_venv(venv, stack_dir, Path(scratch) / str(number)))
    return loaded


def _extract(
    tar: tarfile.TarFile,
    bundle: Path,
    stack_dir: Path,
    hf_cache: Path,
    models_dir: Path,
    scratch: Path,
    progress: Callable[[int], None],
) -> Loaded:
    manifest = _manifest(tar, bundle)
    targets = _targets(manifest, stack_dir, hf_cache, models_dir, scratch)
    check_disk_space(sum(t.file.size for t in targets.values()), hf_cache, what=f"the bundle {bundle.name}")
    loaded = Loaded(manifest, stack_dir / manifest.stack)
    seen: set[str] = set()
    for member in tar:
        source = tar.extractfile(member) if member.isfile() and member.name != MANIFEST else None
        if source is None:  # iterating a stream yields the manifest, read first, again
            continue
        if member.name == manifest.stack:
            _write_stack(source.read(), loaded.stack_file)
        elif (target := targets.get(member.name)) is not None:
            _extract_checked(source, target, bundle, progress)
            seen.add(member.name)
        else:
            raise DownloadError(f"{bundle} holds {member.name}, which its manifest does not list")
    missing = sorted(set(targets) - seen)
    if missing:
        raise DownloadError(f"{bundle} is incomplete: {', '.join(missing)} are missing", fix="copy the bundle again")
    loaded.models = [(m, _model_folder(m, stack_dir, hf_cache, models_dir)) for m in manifest.models]
    return loaded


def _manifest(tar: tarfile.TarFile, bundle: Path) -> Manifest:
    first = tar.next()
    source = tar.extractfile(first) if first is not None and first.name == MANIFEST else None
    if source is None:
        raise DownloadError(f"{bundle} is not a servestack bundle (it does not start with {MANIFEST})")
    try:
        manifest = Manifest.model_validate_json(source.read())
    except ValidationError as exc:
        raise DownloadError(f"{bundle}: its manifest cannot be read ({exc.errors()[0]['msg']})") from None
    if manifest.format != FORMAT or manifest.version > VERSION:
        raise DownloadError(
            f"{bundle} is a {manifest.format} version {manifest.version}, this servestack reads version {VERSION}",
            fix="load it with the servestack that made it, or a newer one",
        )
    return manifest


def _targets(
    manifest: Manifest, stack_dir: Path, hf_cache: Path, models_dir: Path, scratch: Path
) -> dict[str, _Target]:
    targets = {}
    for model in manifest.models:
        folder = _model_folder(model, stack_dir, hf_cache, models_dir)
        for file in model.files:
            if model.placement is Placement.HF_CACHE:
                path = _repo_folder(hf_cache, model) / "blobs" / (file.blob or file.sha256)
            else:
                path = folder / file.path
            targets[file.member] = _Target(_safe(path), file, model)
    for number, venv in enumerate(manifest.venvs):
        for file in venv.files:
            targets[file.member] = _Target(_safe(scratch / str(number) / file.path), file, venv)
    return targets


def _model_folder(model: BundleModel, stack_dir: Path, hf_cache: Path, models_dir: Path) -> Path:
    """The folder the model's files are found in once loaded (an HF cache snapshot, or its own folder)."""
    if model.placement is Placement.HF_CACHE:
        return _repo_folder(hf_cache, model) / "snapshots" / str(model.commit)
    base = {Placement.MODELS_DIR: models_dir, Placement.STACK_DIR: stack_dir}.get(model.placement)
    return base / model.folder if base is not None else Path(model.folder)


def _repo_folder(hf_cache: Path, model: BundleModel) -> Path:
    return hf_cache / ("models--" + str(model.repo_id).replace("/", "--"))


def _safe(path: Path) -> Path:
    """`path`, refused when a `..` in the manifest would put it outside the folder it names."""
    if ".." in path.parts:
        raise DownloadError(f"the bundle names a file outside its folders: {path}")
    return path


def _write_stack(text: bytes, path: Path) -> None:
    if path.exists() and path.read_bytes() != text:
        raise DownloadError(
            f"{path} exists and differs from the bundle's stack file", fix="load the bundle with --dir EMPTY_FOLDER"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text)


def _extract_checked(source: IO[bytes], target: _Target, bundle: Path, progress: Callable[[int], None]) -> None:
    target.path.parent.mkdir(parents=True, exist_ok=True)
    partial = target.path.with_name(f"{target.path.name}.{os.getpid()}.partial")
    digest = hashlib.sha256()
    try:
        with partial.open("wb") as out:
            while chunk := source.read(CHUNK):
                digest.update(chunk)
                out.write(chunk)
                progress(len(chunk))
        if digest.hexdigest() != target.file.sha256:
            raise DownloadError(
                f"{target.file.path} in {bundle} is damaged: its SHA-256 is {digest.hexdigest()}, the manifest "
                f"says {target.file.sha256}; it was not loaded",
                fix="copy the bundle again (or make it again where the model is)",
            )
        partial.replace(target.path)
    finally:
        partial.unlink(missing_ok=True)


def _finish_model(model: BundleModel, folder: Path, hf_cache: Path, records: RecordStore, bundle: str) -> None:
    """HF cache: link the snapshot's files to their blobs and point `refs/REVISION` at the commit; then record
    the files as checked against the manifest."""
    if model.placement is Placement.HF_CACHE:
        blobs = _repo_folder(hf_cache, model) / "blobs"
        for file in model.files:
            link = folder / file.path
            link.parent.mkdir(parents=True, exist_ok=True)
            link.unlink(missing_ok=True)
            link.symlink_to(os.path.relpath(blobs / (file.blob or file.sha256), link.parent))
        ref = _repo_folder(hf_cache, model) / "refs" / (model.revision or "main")
        ref.parent.mkdir(parents=True, exist_ok=True)
        ref.write_text(str(model.commit))
    checked = {f.path: FileRecord(size=f.size, sha256=f.sha256, checked=CHECKED_BUNDLE) for f in model.files}
    records.add(folder, checked, source=f"bundle {bundle}", hub="bundle", commit=model.commit)


def _build_venv(venv: BundleVenv, stack_dir: Path, wheels: Path) -> tuple[BundleVenv, Path, bool]:
    """Create the venv the stack names from the wheels in `wheels` (not when it exists: it is left alone)."""
    path = Path(venv.venv).expanduser()
    path = path if path.is_absolute() else stack_dir / path
    if path.exists():
        return venv, path, False
    wheels.mkdir(parents=True, exist_ok=True)  # a venv with no packages has no wheels
    requirements = wheels / "requirements.txt"
    requirements.write_text(venv.requirements)
    build_venv(venv.python, path, wheels, requirements)
    return venv, path, True
