"""Short model names, as Ollama users write them: `qwen2.5-coder:32b-q5_k_m` (seed 003's pull script),
`qwen2.5-coder:32b`, `llama3.1` (its default size).

The names are data (`library.json`): each family and size maps to the Hugging Face repository of its
GGUF quantisations and to that of its original safetensors weights. A name with a quant means the GGUF
repository and that quant; without one, the caller says which format it prefers (an engine's own:
llama.cpp loads GGUF, vLLM safetensors). `instruct` in a tag is accepted and ignored (the library holds
the instruct models), as are Ollama's `fp16` (the GGUF F16 file) and `latest` (the default size).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from servestack.downloads.selection import parse_quant
from servestack.errors import DownloadError

LIBRARY_RESOURCE = "library.json"
FORMATS = ("gguf", "safetensors")


@dataclass(frozen=True)
class LibraryModel:
    """One short name resolved: the repository and, for GGUF, the quant (None: the usual default)."""

    name: str  # as written
    repo_id: str
    format: str  # "gguf" | "safetensors"
    quant: str | None


@dataclass(frozen=True)
class Library:
    """family → {"default": size, "sizes": {size: {"gguf": repo, "safetensors": repo}}}."""

    families: Mapping[str, Mapping[str, Any]]

    @classmethod
    def builtin(cls) -> Library:
        return _builtin()

    def knows(self, text: str) -> bool:
        """Whether `text` is meant as a short name: one of the families, with or without a tag."""
        return text.partition(":")[0].lower() in self.families

    def resolve(self, text: str, formats: Sequence[str] = FORMATS) -> LibraryModel:
        """The repository `text` names, in the first of `formats` it has (a quant in the name means GGUF)."""
        family_name, _, tag = text.partition(":")
        family = self.families.get(family_name.lower())
        if family is None:
            raise DownloadError(
                f"{text!r} is not a model name servestack knows",
                fix=f"known names: {', '.join(sorted(self.families))} (or give ORG/NAME from Hugging Face)",
            )
        size, quant = _parse_tag(text, tag, family)
        repos = family["sizes"][size]
        wanted = ["gguf"] if quant else [f for f in formats if f in FORMATS]
        chosen = next((f for f in wanted if f in repos), None)
        if chosen is None:
            has = " and ".join(sorted(repos))
            raise DownloadError(
                f"{family_name}:{size} has no {' or '.join(wanted)} weights in servestack's library (only {has})",
                fix=f"name the repository as ORG/NAME instead ({'; '.join(repos.values())})",
            )
        return LibraryModel(text, repos[chosen], chosen, quant)


def _parse_tag(text: str, tag: str, family: Mapping[str, Any]) -> tuple[str, str | None]:
    """(size, GGUF quant or None) of a tag: `32b`, `32b-q5_k_m`, `32b-instruct-q5_K_M`, `latest`, ``."""
    parts = [p for p in tag.lower().split("-") if p and p != "instruct"] if tag.lower() != "latest" else []
    size = parts[0] if parts else family["default"]
    if size not in family["sizes"]:
        raise DownloadError(
            f"{text!r}: no size {size!r} of {text.partition(':')[0]} in servestack's library",
            fix=f"sizes: {', '.join(family['sizes'])}",
        )
    rest = "_".join(parts[1:])
    if not rest:
        return size, None
    quant = parse_quant(rest)
    if quant is None:
        raise DownloadError(
            f"{text!r}: {'-'.join(parts[1:])!r} is not a GGUF quantisation",
            fix="write one such as q4_k_m, q5_k_m, q8_0 or fp16 (e.g. qwen2.5-coder:32b-q5_k_m)",
        )
    return size, quant


def _builtin() -> Library:
    text = resources.files("servestack.downloads").joinpath(LIBRARY_RESOURCE).read_text()
    return Library(json.loads(text)["families"])
