"""A file as a hub lists it (shared by the hub contract, progress reporting and checksums)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RemoteFile:
    """One file of a repository; `size` is None when the hub did not say.

    What the hub publishes to check the bytes with: `sha256` (Hugging Face for LFS files, ModelScope for
    every file) and `blob_id`, the git object id (Hugging Face, every file: SHA-1 of `blob SIZE\\0` + bytes).
    """

    path: str
    size: int | None = None
    sha256: str | None = None
    blob_id: str | None = None
