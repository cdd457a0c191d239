"""Checking a file's bytes against what its hub published, and hashing files for the records.

Hugging Face publishes the SHA-256 of every LFS file (the weights) and the git blob id of every file
(SHA-1 over `blob SIZE\\0` and the bytes); ModelScope publishes a SHA-256 per file. huggingface_hub
itself checks only sizes, so a download whose bytes were damaged on the way (a proxy, a disk) would
pass; here each file is hashed once it is complete, compared, and removed when it does not match.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from servestack.downloads.records import CHECKED_GIT_BLOB, CHECKED_SHA256, NOT_PUBLISHED, FileRecord
from servestack.downloads.remote import RemoteFile
from servestack.errors import DownloadError

CHUNK = 4 * 1024 * 1024


def sha256_of(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def git_blob_id_of(path: Path) -> str:
    """The git object id of the file's bytes, as the hub lists it (`blobId`)."""
    digest = hashlib.sha1(b"blob %d\0" % path.stat().st_size)
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def check_file(path: Path, remote: RemoteFile, *, what: str) -> FileRecord:
    """Hash `path` and compare it with what the hub published for `remote`; a mismatch removes the file
    and raises DownloadError naming it (`what`: the repository, for the message)."""
    sha256 = sha256_of(path)
    size = path.stat().st_size
    if remote.sha256:
        if sha256 != remote.sha256.lower():
            raise _mismatch(path, remote, what, "SHA-256", sha256, remote.sha256.lower())
        return FileRecord(size=size, sha256=sha256, checked=CHECKED_SHA256)
    if remote.blob_id:
        blob_id = git_blob_id_of(path)
        if blob_id != remote.blob_id.lower():
            raise _mismatch(path, remote, what, "git blob id", blob_id, remote.blob_id.lower())
        return FileRecord(size=size, sha256=sha256, checked=CHECKED_GIT_BLOB)
    return FileRecord(size=size, sha256=sha256, checked=NOT_PUBLISHED)


def discard(path: Path) -> None:
    """Remove a file, and the blob it points to when it is a link (the HF cache's snapshots are links)."""
    target = path.resolve() if path.is_symlink() else None
    path.unlink(missing_ok=True)
    if target is not None:
        target.unlink(missing_ok=True)


def _mismatch(path: Path, remote: RemoteFile, what: str, kind: str, got: str, published: str) -> DownloadError:
    discard(path)
    return DownloadError(
        f"{remote.path} of {what} is corrupt: its {kind} is {got}, the hub published {published}; "
        f"the file was removed ({path})",
        fix="run the same pull again: the file is downloaded anew, the others are kept",
    )
