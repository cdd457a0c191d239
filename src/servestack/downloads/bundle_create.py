"""`servestack bundle create STACK -o FILE`: a stack's weights (and, optionally, wheels for its venv runtimes)
in one tar file with a manifest and checksums, prepared where there is a hub (seed 004's "prepare online,
run offline").

What each service's `model:` needs packs as it is found here: a hub model from the HF cache (the files
its engine loads, in the cache's layout), a ModelScope folder, a local file or folder. A model shipped in a
Python package and an engine that loads no weights add nothing. A hub model not pulled yet is an error
saying which pull fetches it. Checksums come from the pull records (checked against the hub then) or are
computed; every byte is hashed again as it is written, so a file that changed meanwhile is caught.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from servestack.downloads.bundle_manifest import (
    MANIFEST,
    BundleFile,
    BundleModel,
    BundleVenv,
    Manifest,
    Placement,
)
from servestack.downloads.checksums import sha256_of
from servestack.downloads.hub import walk_files
from servestack.downloads.records import RecordStore
from servestack.downloads.reference import HubName, parse_reference
from servestack.downloads.selection import select_files
from servestack.downloads.space import check_disk_space
from servestack.downloads.wheels import download_wheels, freeze
from servestack.errors import DownloadError
from servestack.modelinfo import cached_snapshot
from servestack.stack import NativeRuntime, Stack, resolve_model
from servestack.stack.models import MODELSCOPE_PREFIX, PACKAGE_PREFIX, modelscope_dir
from servestack.stack.paths import names_local_model

MODELSCOPE_SKIP = (".cache", "._____temp", ".msc", ".mv")


@dataclass
class BundleContents:
    """What a bundle will hold: the manifest, where each member is read from, and notes for the user."""

    manifest: Manifest
    sources: dict[str, Path] = field(default_factory=dict)  # member → file here
    notes: list[str] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.manifest.files().values())


def collect(
    stack: Stack,
    stack_file: Path,
    *,
    formats: Mapping[str, Sequence[str]],
    hf_cache: Path,
    models_dir: Path,
    records: RecordStore,
    wheels_dir: Path | None = None,
) -> BundleContents:
    """What `stack` needs (`formats`: each service's engine's weight formats); `wheels_dir`: fetch the
    wheels of its venv runtimes there."""
    contents = BundleContents(Manifest(created_at=time.time(), stack=stack_file.name))
    by_model: dict[str, list[str]] = {}
    for name, service in stack.services.items():
        if not formats[name]:
            contents.notes.append(f"{name}: its engine ({service.engine}) loads no weights")
        elif service.model.startswith(PACKAGE_PREFIX):
            contents.notes.append(f"{name}: {service.model} ships in a Python package (install it there)")
        else:
            by_model.setdefault(service.model, []).append(name)
    for number, (model, services) in enumerate(by_model.items()):
        found = _model(model, formats[services[0]], stack_file.parent, hf_cache, models_dir)
        _add_model(contents, model, found, services, f"models/{number}", records)
    if wheels_dir is not None:
        _add_venvs(contents, stack, stack_file.parent, wheels_dir)
    if not contents.manifest.models and not contents.manifest.venvs:
        raise DownloadError(
            f"nothing in {stack_file} to bundle: " + "; ".join(contents.notes),
            fix="copy the stack file alone; install the packages its models ship in where it will run",
        )
    return contents


def write_bundle(
    contents: BundleContents, stack_text: bytes, out: Path, *, progress: Callable[[int], None] = lambda n: None
) -> None:
    """Write the bundle to `out` (through `out.partial`, so a failed write leaves no bundle behind)."""
    check_disk_space(contents.total_bytes, out.parent, what=f"the bundle {out.name}")
    partial = out.with_name(out.name + ".partial")
    files = contents.manifest.files()
    try:
        with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:
            _add_bytes(tar, MANIFEST, contents.manifest.model_dump_json(indent=1).encode())
            _add_bytes(tar, contents.manifest.stack, stack_text)
            for member, source in contents.sources.items():
                _add_file(tar, member, source, files[member], progress)
        partial.replace(out)
    finally:
        partial.unlink(missing_ok=True)


@dataclass(frozen=True)
class _Found:
    placement: Placement
    folder: Path  # where the files are here
    paths: list[str]
    target: str  # BundleModel.folder
    repo_id: str | None = None
    commit: str | None = None


def _model(model: str, formats: Sequence[str], stack_dir: Path, hf_cache: Path, models_dir: Path) -> _Found:
    if model.startswith(MODELSCOPE_PREFIX):
        repo_id = model.removeprefix(MODELSCOPE_PREFIX)
        folder = Path(resolve_model(model, models_dir=models_dir))
        paths = [f.path for f in walk_files(folder, skip=MODELSCOPE_SKIP)]
        target = modelscope_dir(Path(), repo_id).as_posix()
        return _Found(Placement.MODELS_DIR, folder, paths, target, repo_id)
    if names_local_model(model) or Path(model).exists():
        return _local(Path(resolve_model(model, models_dir=models_dir)), model, stack_dir)
    reference = parse_reference(model, formats)
    if reference.hub is not HubName.HUGGINGFACE:
        raise DownloadError(f"{model}: only Hugging Face and ModelScope models can be bundled")
    snapshot = cached_snapshot(hf_cache, reference.repo_id)
    pull = f"servestack pull {model}"
    if snapshot is None:
        raise DownloadError(f"{model} ({reference}) is not in the HF cache ({hf_cache})", fix=pull)
    chosen = select_files(walk_files(snapshot), quant=reference.quant)
    paths = [f.path for f in chosen.files]
    return _Found(Placement.HF_CACHE, snapshot, paths, reference.repo_id, reference.repo_id, snapshot.name)


def _local(path: Path, model: str, stack_dir: Path) -> _Found:
    if not path.exists():
        raise DownloadError(f"{model}: no such file or folder {path}", fix="correct the stack's `model:`")
    folder, paths = (path, [f.path for f in walk_files(path)]) if path.is_dir() else (path.parent, [path.name])
    if folder.is_relative_to(stack_dir.absolute()):
        return _Found(Placement.STACK_DIR, folder, paths, folder.relative_to(stack_dir.absolute()).as_posix())
    return _Found(Placement.ABSOLUTE, folder, paths, str(folder))


def _add_model(
    contents: BundleContents, model: str, found: _Found, services: list[str], prefix: str, records: RecordStore
) -> None:
    record = records.read(found.folder)
    files = []
    for path in found.paths:
        source = found.folder / path
        size = source.stat().st_size
        known = record.files.get(path) if record is not None else None
        sha256 = known.sha256 if known is not None and known.size == size else sha256_of(source)
        blob = source.resolve().name if found.placement is Placement.HF_CACHE and source.is_symlink() else None
        member = f"{prefix}/{path}"
        files.append(BundleFile(path=path, member=member, size=size, sha256=sha256, blob=blob))
        contents.sources[member] = source
    revision = "main" if found.placement is Placement.HF_CACHE else None
    contents.manifest.models.append(
        BundleModel(
            services=services,
            model=model,
            placement=found.placement,
            folder=found.target,
            repo_id=found.repo_id,
            revision=revision,
            commit=found.commit,
            files=files,
        )
    )


def _add_venvs(contents: BundleContents, stack: Stack, stack_dir: Path, wheels_dir: Path) -> None:
    by_venv: dict[str, list[str]] = {}
    for name, service in stack.services.items():
        runtime = service.runtime
        if isinstance(runtime, NativeRuntime) and runtime.venv:
            by_venv.setdefault(runtime.venv, []).append(name)
    for number, (venv, services) in enumerate(by_venv.items()):
        python, requirements = freeze(Path(venv))
        folder = wheels_dir / str(number)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "requirements.txt").write_text(requirements)
        files = []
        for wheel in download_wheels(Path(venv), folder / "requirements.txt", folder / "wheels"):
            member = f"venvs/{number}/{wheel.name}"
            files.append(BundleFile(path=wheel.name, member=member, size=wheel.stat().st_size, sha256=sha256_of(wheel)))
            contents.sources[member] = wheel
        written = stack.written(("services", services[0], "runtime", "venv")) or venv
        contents.manifest.venvs.append(
            BundleVenv(services=services, venv=written, python=python, requirements=requirements, files=files)
        )


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime = len(data), int(time.time())
    tar.addfile(info, io.BytesIO(data))


def _add_file(
    tar: tarfile.TarFile, member: str, source: Path, file: BundleFile, progress: Callable[[int], None]
) -> None:
    info = tarfile.TarInfo(member)
    info.size, info.mtime = file.size, int(source.stat().st_mtime)
    with source.open("rb") as raw:
        reader = _HashingReader(raw, progress)
        tar.addfile(info, reader)
    if reader.digest.hexdigest() != file.sha256:
        raise DownloadError(
            f"{source} does not match its recorded SHA-256 ({file.sha256}): it changed or is damaged",
            fix="`servestack models --verify` checks every model; remove and pull a damaged one again",
        )


class _HashingReader:
    """A file object that hashes what is read through it (tarfile reads the data in chunks)."""

    def __init__(self, raw: BinaryIO, progress: Callable[[int], None]) -> None:
        self.raw = raw
        self.digest = hashlib.sha256()
        self.progress = progress

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.digest.update(data)
        self.progress(len(data))
        return data
