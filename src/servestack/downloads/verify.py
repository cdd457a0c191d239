"""`servestack models --verify`: hash each model's files again and compare them with what was recorded.

The expected SHA-256 of a file is its record (written when `pull` checked it against the hub, or when a
bundle was loaded), else, in the HF cache, the name of the blob it links to (huggingface_hub names an
LFS file's blob by its SHA-256). A file with neither is reported as unknown, not as an error.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from servestack.downloads.checksums import sha256_of
from servestack.downloads.inventory import LocalModel
from servestack.downloads.records import RecordStore

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class Verdict(Enum):
    MATCHES = "matches"
    DIFFERS = "differs"
    UNKNOWN = "no checksum known"


@dataclass(frozen=True)
class FileVerdict:
    path: Path
    verdict: Verdict
    expected: str | None = None
    actual: str | None = None
    basis: str = ""  # what the expected checksum came from


def verify_model(model: LocalModel, records: RecordStore) -> list[FileVerdict]:
    """Every file of `model`, hashed and compared with its recorded (or blob-named) SHA-256."""
    record = records.read(model.folder)
    verdicts = []
    for name in model.files:
        path = model.folder / name
        recorded = record.files.get(name) if record is not None else None
        expected, basis = (recorded.sha256, f"recorded ({recorded.checked})") if recorded else _blob_name(path)
        if expected is None:
            verdicts.append(FileVerdict(path, Verdict.UNKNOWN))
            continue
        actual = sha256_of(path)
        verdict = Verdict.MATCHES if actual == expected else Verdict.DIFFERS
        verdicts.append(FileVerdict(path, verdict, expected, actual, basis))
    return verdicts


def differing(verdicts: Sequence[FileVerdict]) -> list[FileVerdict]:
    return [v for v in verdicts if v.verdict is Verdict.DIFFERS]


def _blob_name(path: Path) -> tuple[str | None, str]:
    if path.is_symlink() and _SHA256.match(name := path.resolve().name):
        return name, "the HF cache's blob name"
    return None, ""
