"""The contract between `pull` and a model hub (Hugging Face, ModelScope), and the data they exchange."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from servestack.downloads.progress import ProgressListener
from servestack.downloads.remote import RemoteFile


@dataclass(frozen=True)
class Listing:
    """The files of a repository at one revision, as the hub (or, offline, the local copy) lists them.

    `commit` is the resolved commit when the hub said which; `revision` is what was asked for.
    """

    files: tuple[RemoteFile, ...]
    revision: str | None = None
    commit: str | None = None
    gated: bool = False


class HubUnreachable(Exception):
    """The hub could not be reached (network down, offline mode); `pull` then looks at the local copy."""


class Hub(Protocol):
    """A place models are downloaded from. Errors other than HubUnreachable are DownloadErrors."""

    name: str

    def listing(self, repo_id: str, revision: str | None) -> Listing:
        """The repository's files at `revision` (None: the default branch), with sizes."""

    def cached_listing(self, repo_id: str, revision: str | None) -> Listing | None:
        """The files of a local copy of the repository, without any network; None if there is none."""

    def location(self, repo_id: str, listing: Listing) -> Path:
        """The folder the repository's files are (or will be) in, at the listing's revision."""

    def storage(self, repo_id: str) -> Path:
        """The folder downloads are written to (for the free-space check)."""

    def download(self, repo_id: str, listing: Listing, files: Sequence[RemoteFile], progress: ProgressListener) -> None:
        """Download `files` into `location(repo_id, listing)`."""

    def finalize(self, repo_id: str, listing: Listing) -> None:
        """Record that the listing's revision is complete locally (e.g. the HF cache's `refs/main`)."""


def is_complete(path: Path, size: int | None) -> bool:
    """Whether the file at `path` is there in full (by size, when the size is known)."""
    try:
        return path.is_file() and (size is None or path.stat().st_size == size)
    except OSError:
        return False


def walk_files(root: Path, skip: tuple[str, ...] = ()) -> tuple[RemoteFile, ...]:
    """The files under `root` as a listing (paths with `/`), leaving out top-level folders named in `skip`."""
    found = []
    for folder, dirs, names in os.walk(root):
        if Path(folder) == root:
            dirs[:] = [d for d in dirs if d not in skip]
        for name in names:
            path = Path(folder) / name
            if path.is_file():
                found.append(RemoteFile(path.relative_to(root).as_posix(), path.stat().st_size))
    return tuple(sorted(found, key=lambda f: f.path))
