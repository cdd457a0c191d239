"""What `servestack pull` is asked to fetch: a hub, a repository id and, for GGUF repos, a quant.

mistralai/Codestral-22B-v0.1                  a Hugging Face repository
bartowski/Qwen2.5-7B-Instruct-GGUF:Q5_K_M     one quant of a GGUF repository (llama.cpp's `-hf` syntax)
modelscope:ZhipuAI/GLM-4.7                    a ModelScope repository
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from servestack.errors import DownloadError
from servestack.stack.models import MODELSCOPE_PREFIX, PACKAGE_PREFIX, is_local_path

_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9_.-]+$")
_QUANT = re.compile(r"^[A-Za-z0-9_]+$")


class HubName(Enum):
    HUGGINGFACE = "Hugging Face"
    MODELSCOPE = "ModelScope"


@dataclass(frozen=True)
class ModelReference:
    """A model on a hub; `quant` picks one quantization of a GGUF repository."""

    hub: HubName
    repo_id: str
    quant: str | None = None

    def __str__(self) -> str:
        prefix = MODELSCOPE_PREFIX if self.hub is HubName.MODELSCOPE else ""
        suffix = f":{self.quant}" if self.quant else ""
        return f"{prefix}{self.repo_id}{suffix}"


def looks_like_hub_reference(text: str) -> bool:
    """Whether `text` is meant as a hub model (as opposed to a service name or a local path)."""
    return not is_local_path(text) and (text.startswith(MODELSCOPE_PREFIX) or "/" in text)


def parse_reference(text: str) -> ModelReference:
    """Parse `ORG/NAME`, `ORG/NAME:QUANT` or `modelscope:ORG/NAME`; raise DownloadError for anything else."""
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
            "or modelscope:ORG/NAME",
        )
    return ModelReference(hub=hub, repo_id=repo_id, quant=quant or None)
