"""Mounts into containers, and where a host model path is found inside one.

A local model path is seen inside the container through the mount that covers it (seed 003 mounts
`./data/mistral-models` at `/models`); a path no mount covers is mounted read-only at the same path.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

HF_CACHE_INSIDE = "/root/.cache/huggingface"


@dataclass(frozen=True)
class Mount:
    source: str
    target: str
    read_only: bool = False

    def spec(self) -> str:
        return f"{self.source}:{self.target}" + (":ro" if self.read_only else "")


def parse_mount(text: str) -> Mount:
    """`SRC`, `SRC:DST` or `SRC:DST:ro` (as for `docker -v` and `apptainer --bind`)."""
    parts = text.split(":")
    source = parts[0]
    target = parts[1] if len(parts) > 1 and parts[1] else source
    return Mount(source, target, read_only=len(parts) > 2 and "ro" in parts[2].split(","))


def cache_mounts(model_cache: str | None) -> list[Mount]:
    return [Mount(model_cache, HF_CACHE_INSIDE)] if model_cache else []


def cache_env(model_cache: str | None) -> dict[str, str]:
    return {"HUGGINGFACE_HUB_CACHE": HF_CACHE_INSIDE} if model_cache else {}


def path_inside(path: str, mounts: list[Mount]) -> str | None:
    """Where host `path` appears inside the container, through the deepest covering mount."""
    covering = [m for m in mounts if path == m.source or path.startswith(m.source.rstrip("/") + "/")]
    if not covering:
        return None
    mount = max(covering, key=lambda m: len(m.source))
    rest = path[len(mount.source) :].lstrip("/")
    return posixpath.join(mount.target, rest) if rest else mount.target


def model_mounts(model: str, mounts: list[Mount]) -> list[Mount]:
    """The mount a local model needs beyond `mounts` (none for hub ids or covered paths)."""
    if not model.startswith("/") or path_inside(model, mounts) is not None:
        return []
    return [Mount(model, model, read_only=True)]


def model_inside(model: str, mounts: list[Mount]) -> str:
    if not model.startswith("/"):
        return model
    return path_inside(model, mounts) or model
