"""A file as a hub lists it (shared by the hub contract and progress reporting)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RemoteFile:
    """One file of a repository; `size` is None when the hub did not say."""

    path: str
    size: int | None = None
