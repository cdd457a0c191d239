"""What `servestack pull` is asked to fetch: a hub, a repository id and, for GGUF repos, a quant.

mistralai/Codestral-22B-v0.1                  a Hugging Face repository
bartowski/Qwen2.5-7B-Instruct-GGUF:Q5_K_M     one quant of a GGUF repository (llama.cpp's `-hf` syntax)
modelscope:ZhipuAI/GLM-4.7                    a ModelScope repository
qwen2.5-coder:32b-q5_k_m                      a short name from servestack's library (library.py)
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum

from servestack.downloads.library import FORMATS, Library
from servestack.errors import DownloadError
from servestack.stack.models import MODELSCOPE_PREFIX, PACKAGE_PREFIX, is_local_path

_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9_.-]+$")
_QUANT = re.compile(r"^[A-Za-z0-9_]+$")


class HubName(Enum):
    HUGGINGFACE = "Hugging Face"
    MODELSCOPE = "ModelScope"


@dataclass(frozen=True)
class ModelReference:
    """A model on a hub; `quant` picks one quantization of a GGUF repository. `short_name` is the library
    name it was written as (`qwen2.5-coder:32b-q5_k_m`), if any; `gguf` says it is a GGUF model."""

    hub: HubName
    repo_id: str
    quant: str | None = None
    short_name: str | None = field(default=None, compare=False)
    gguf: bool = field(default=False, compare=False)

    def __str__(self) -> str:
        prefix = MODELSCOPE_PREFIX if self.hub is HubName.MODELSCOPE else ""
        suffix = f":{self.quant}" if self.quant else ""
        return f"{prefix}{self.repo_id}{suffix}"

    @property
    def label(self) -> str:
        """As the user wrote it, with the repository when that was a short name."""
        return f"{self.short_name} ({self})" if self.short_name else str(self)


def looks_like_hub_reference(text: str) -> bool:
    """Whether `text` is meant as a hub model (as opposed to a service name or a local path): an id, or a
    short name with a tag (a service name holds no `:`)."""
    return not is_local_path(text) and (text.startswith(MODELSCOPE_PREFIX) or "/" in text or ":" in text)


def parse_reference(text: str, formats: Sequence[str] = FORMATS) -> ModelReference:
    """Parse `ORG/NAME`, `ORG/NAME:QUANT`, `modelscope:ORG/NAME` or a short name (`qwen2.5-coder:32b-q5_k_m`,
    in the first of `formats` the library has it in); raise DownloadError for anything else."""
    library = Library.builtin()
    if "/" not in text and library.knows(text):
        found = library.resolve(text, formats)
        return ModelReference(
            HubName.HUGGINGFACE, found.repo_id, found.quant, short_name=text, gguf=found.format == "gguf"
        )
    if text.startswith(PACKAGE_PREFIX):
        raise DownloadError(f"{text!r} ships inside a Python package: there is nothing to download")
    if is_local_path(text):
        raise DownloadError(f"{text!r} is a local path: there is nothing to download")
    hub = HubName.MODELSCOPE if text.startswith(MODELSCOPE_PREFIX) else HubName.HUGGINGFACE
    repo_id, _, quant = text.removeprefix(MODELSCOPE_PREFIX).partition(":")
    if not _REPO_ID.match(repo_id) or (quant and not _QUANT.match(quant)):
        raise DownloadError(
            f"{text!r} is not a model id",
            fix="write ORG/NAME (e.g. mistralai/Codestral-22B-v0.1), ORG/NAME:QUANT for one GGUF quant, "
            "modelscope:ORG/NAME, or a short name (e.g. qwen2.5-coder:32b-q5_k_m)",
        )
    return ModelReference(hub=hub, repo_id=repo_id, quant=quant or None, gguf=bool(quant))
