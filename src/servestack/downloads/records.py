"""What servestack recorded about the model files it put on this machine: each file's size and SHA-256,
and what that was checked against when the file arrived (the hub's SHA-256, its git blob id, a bundle's
manifest, or nothing the hub published).

One JSON file per model folder (an HF cache snapshot, a `--dir`, a ModelScope folder) under
`<home>/checksums/`, named after the folder. `servestack models --verify` hashes the files again and
compares them with these records.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from pydantic import BaseModel, ValidationError

from servestack.settings import Settings

CHECKED_SHA256 = "hub sha256"
CHECKED_GIT_BLOB = "hub git blob id"
CHECKED_BUNDLE = "bundle manifest"
NOT_PUBLISHED = "nothing published"

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


class FileRecord(BaseModel, frozen=True):
    size: int
    sha256: str
    checked: str


class FolderRecord(BaseModel):
    """The recorded files of one model folder (`files`: path inside the folder → record)."""

    location: str
    source: str  # what was pulled or loaded: `org/name:Q4_K_M`, `modelscope:org/name`, `bundle x.tar`
    hub: str
    commit: str | None = None
    files: dict[str, FileRecord] = {}


def checksums_dir(settings: Settings) -> Path:
    return settings.home / "checksums"


class RecordStore:
    """The records under `root` (one file per model folder; writes replace a file atomically)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def read(self, location: Path) -> FolderRecord | None:
        try:
            return FolderRecord.model_validate_json(self._path(location).read_bytes())
        except (OSError, ValidationError):
            return None

    def add(
        self, location: Path, files: Mapping[str, FileRecord], *, source: str, hub: str, commit: str | None
    ) -> None:
        """Record `files` of the folder `location` (kept records of its other files stay)."""
        known = self.read(location)
        merged = {**(known.files if known else {}), **files}
        self._write(FolderRecord(location=str(location), source=source, hub=hub, commit=commit, files=merged))

    def forget(self, location: Path, paths: Iterable[str]) -> None:
        """Drop the records of `paths` in `location` (the whole record once none is left)."""
        known = self.read(location)
        if known is None:
            return
        gone = set(paths)
        left = {p: r for p, r in known.files.items() if p not in gone}
        if left:
            self._write(known.model_copy(update={"files": left}))
        else:
            with contextlib.suppress(FileNotFoundError):
                self._path(location).unlink()

    def all(self) -> list[FolderRecord]:
        if not self.root.is_dir():
            return []
        found = []
        for path in sorted(self.root.glob("*.json")):
            with contextlib.suppress(OSError, ValidationError):
                found.append(FolderRecord.model_validate_json(path.read_bytes()))
        return found

    def _write(self, record: FolderRecord) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        path = self._path(Path(record.location))
        partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        partial.write_text(record.model_dump_json(indent=1))
        partial.replace(path)

    def _path(self, location: Path) -> Path:
        key = str(location.absolute())
        readable = _UNSAFE.sub("-", "-".join(location.parts[-3:]))[-80:]
        return self.root / f"{readable}-{hashlib.sha256(key.encode()).hexdigest()[:12]}.json"
