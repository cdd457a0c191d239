"""The manifest of an offline bundle: what it holds, where each file goes, and each file's SHA-256.

A bundle is a tar file: `manifest.json` first, then the stack file, then every file the manifest names
(`member` is its name in the tar). `bundle load` reads the manifest, then streams each member to its
place, hashing it on the way, so a damaged bundle is caught file by file before anything is used.
"""

from __future__ import annotations

from enum import Enum

from pydantic import BaseModel

MANIFEST = "manifest.json"
FORMAT = "servestack-bundle"
VERSION = 1


class Placement(Enum):
    """Where a model's files go on the machine that loads the bundle."""

    HF_CACHE = "hf-cache"  # the HF cache layout (blobs, snapshots/COMMIT, refs/REVISION): engines find it by id
    MODELS_DIR = "models-dir"  # under the models dir (ModelScope folders: modelscope/ORG/NAME)
    STACK_DIR = "stack-dir"  # beside the stack file (`./weights/x.gguf` in the stack)
    ABSOLUTE = "absolute"  # at the same absolute path the stack names


class BundleFile(BaseModel):
    path: str  # inside the model's folder (or the wheel's name)
    member: str  # its name in the tar
    size: int
    sha256: str
    blob: str | None = None  # HF cache: the blob it links to (named by its SHA-256, or git id for small files)


class BundleModel(BaseModel):
    services: list[str]
    model: str  # as the stack writes it
    placement: Placement
    folder: str  # HF cache: ORG/NAME; models dir / stack dir: relative; absolute: the path
    repo_id: str | None = None
    revision: str | None = None
    commit: str | None = None
    files: list[BundleFile]


class BundleVenv(BaseModel):
    """Wheels to rebuild a service's venv runtime offline (`pip install --no-index`)."""

    services: list[str]
    venv: str  # as the stack writes it
    python: str  # MAJOR.MINOR of the venv's interpreter
    requirements: str  # pip freeze of the venv
    files: list[BundleFile]


class Manifest(BaseModel):
    format: str = FORMAT
    version: int = VERSION
    created_at: float
    stack: str  # the stack file's name (its member too)
    models: list[BundleModel] = []
    venvs: list[BundleVenv] = []

    def files(self) -> dict[str, BundleFile]:
        """Every file, by its member name."""
        found = {f.member: f for m in self.models for f in m.files}
        found.update({f.member: f for v in self.venvs for f in v.files})
        return found
