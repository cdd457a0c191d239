"""Pull one model: list its files, choose, skip what is complete, check disk space, download, check.

Offline-first: files already complete are never fetched again, and when the hub cannot be reached a
complete-looking local copy is reported instead of an error. Every file is checked against the hub's
published checksums once, when it arrives (or, for a file already there, when no record of it says it
was), and the result is recorded (records.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from servestack.downloads.checksums import check_file
from servestack.downloads.hf_environment import HfEnvironment
from servestack.downloads.hub import Hub, HubUnreachable, Listing, RemoteFile, is_complete
from servestack.downloads.modelscope import ModelScopeClient, ModelScopeHub
from servestack.downloads.progress import ProgressListener, SilentProgress
from servestack.downloads.records import FileRecord, FolderRecord, RecordStore
from servestack.downloads.reference import HubName, ModelReference
from servestack.downloads.selection import Selection, select_files
from servestack.downloads.space import FreeBytes, check_disk_space, disk_free_bytes
from servestack.errors import DownloadError
from servestack.stack.models import modelscope_dir


class PullStatus(Enum):
    DOWNLOADED = "downloaded"
    COMPLETE = "already complete"
    LOCAL_COPY = "hub unreachable, local copy used"


@dataclass(frozen=True)
class PullResult:
    reference: ModelReference
    hub: str
    status: PullStatus
    location: Path
    selection: Selection
    downloaded: tuple[RemoteFile, ...] = ()
    commit: str | None = None
    unreachable: str | None = None
    checked: tuple[str, ...] = ()  # files hashed and found to match in this pull

    @property
    def downloaded_bytes(self) -> int:
        return sum(f.size or 0 for f in self.downloaded)


def make_hub(
    reference: ModelReference,
    *,
    environ: Mapping[str, str],
    models_dir: Path,
    local_dir: Path | None = None,
    modelscope_client: ModelScopeClient | None = None,
) -> Hub:
    """The hub a reference lives on, writing to `local_dir` if given (else the HF cache / the models dir)."""
    if reference.hub is HubName.MODELSCOPE:
        folder = local_dir or modelscope_dir(models_dir, reference.repo_id)
        return ModelScopeHub(folder, client=modelscope_client)
    # Imported here: huggingface_hub takes ~0.15 s to import, which no other command should pay.
    from servestack.downloads.huggingface import HuggingFaceHub

    return HuggingFaceHub(HfEnvironment.from_environ(environ), local_dir=local_dir)


def pull_model(
    reference: ModelReference,
    hub: Hub,
    *,
    revision: str | None = None,
    include: Sequence[str] = (),
    progress: ProgressListener | None = None,
    free_bytes: FreeBytes = disk_free_bytes,
    records: RecordStore | None = None,
) -> PullResult:
    """Make the chosen files of `reference` complete and checked locally; raise DownloadError if that cannot
    be done (a file whose checksum does not match is removed and named). `records` keeps the checksums."""
    progress = progress or SilentProgress()
    repo_id = reference.repo_id
    try:
        listing = hub.listing(repo_id, revision)
    except HubUnreachable as exc:
        return _local_copy(reference, hub, revision, include, str(exc))
    selection = select_files(listing.files, include=include, quant=reference.quant)
    location = hub.location(repo_id, listing)
    missing = tuple(f for f in selection.files if not is_complete(location / f.path, f.size))
    if missing:
        needed = sum(f.size or 0 for f in missing)
        check_disk_space(needed, hub.storage(repo_id), what=str(reference), free_bytes=free_bytes)
        progress.start(str(reference), missing, needed)
        try:
            hub.download(repo_id, listing, missing, progress)
        finally:
            progress.finish()
    known = records.read(location) if records is not None else None
    unchecked = [f for f in selection.files if f in missing or not _recorded(known, f)]
    checked = _check(reference, hub, listing, location, unchecked, records)
    hub.finalize(repo_id, listing)
    status = PullStatus.DOWNLOADED if missing else PullStatus.COMPLETE
    return PullResult(reference, hub.name, status, location, selection, missing, listing.commit, checked=checked)


def _recorded(record: FolderRecord | None, file: RemoteFile) -> bool:
    """Whether the record holds `file` as the hub lists it now (same size, and same SHA-256 when published)."""
    known = record.files.get(file.path) if record is not None else None
    if known is None or (file.size is not None and known.size != file.size):
        return False
    return file.sha256 is None or known.sha256 == file.sha256.lower()


def _check(
    reference: ModelReference,
    hub: Hub,
    listing: Listing,
    location: Path,
    files: Sequence[RemoteFile],
    records: RecordStore | None,
) -> tuple[str, ...]:
    """Hash `files` and compare them with the hub's checksums; record the good ones, then raise for the bad
    ones (already removed), naming each."""
    good: dict[str, FileRecord] = {}
    bad: list[DownloadError] = []
    for file in files:
        try:
            good[file.path] = check_file(location / file.path, file, what=str(reference))
        except DownloadError as error:
            bad.append(error)
    if records is not None and good:
        records.add(location, good, source=str(reference), hub=hub.name, commit=listing.commit)
    if len(bad) == 1:
        raise bad[0]
    if bad:
        raise DownloadError("; ".join(e.message for e in bad), fix=bad[0].fix)
    return tuple(good)


def _local_copy(
    reference: ModelReference, hub: Hub, revision: str | None, include: Sequence[str], reason: str
) -> PullResult:
    listing = hub.cached_listing(reference.repo_id, revision)
    try:
        selection = select_files(listing.files, include=include, quant=reference.quant) if listing else None
    except DownloadError:
        selection = None
    if listing is None or selection is None:
        raise DownloadError(
            f"cannot reach {hub.name} ({reason}), and {reference} is not in {hub.storage(reference.repo_id)}",
            fix="check the network and the hub's endpoint (HF_ENDPOINT, MODELSCOPE_ENDPOINT), then pull again",
        )
    location = hub.location(reference.repo_id, listing)
    return PullResult(
        reference, hub.name, PullStatus.LOCAL_COPY, location, selection, commit=listing.commit, unreachable=reason
    )
