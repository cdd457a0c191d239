"""The seam between the gateway's model-management routes and the running instance.

Ollama's `/api/pull`, `/api/delete` and `/api/show` need what only the running instance has: the
downloads machinery, the plan (which model each service runs, its facts) and which services run. The
gateway does not import those rooms; the controller implements `ModelAdmin` with them and passes it in
(`controller/models.py`). Errors it raises are GatewayErrors, answered like any other.

Aliases added at run time (`/api/copy`) live in the gateway's alias table, next to the stack file's
`gateway.aliases`; `ModelAdmin` keeps them across restarts (`saved_aliases`, `save_aliases`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class PullUpdate:
    """One step of a pull, in the shape of Ollama's progress lines (`total`, `completed` in bytes)."""

    status: str
    digest: str | None = None
    total: int | None = None
    completed: int | None = None


# Called from any thread while a pull runs.
PullReport = Callable[[PullUpdate], None]


@dataclass(frozen=True)
class ModelDetails:
    """What `/api/show` says of a served model beyond its name (empty strings and None: not known)."""

    source: str  # what the engine loads: a path or a hub id (the Modelfile's FROM)
    format: str = ""  # gguf, safetensors
    family: str = ""  # the model type (llama, qwen2)
    parameter_size: str = ""  # 7.6B, 135M
    quantization_level: str = ""  # Q4_K_M, BF16
    parameter_count: int | None = None
    context_length: int | None = None
    size: int = 0  # bytes of weights


class ModelAdmin(Protocol):
    async def pull(self, name: str, report: PullReport) -> None:
        """Download `name` (a served name, a hub id, ORG/NAME:QUANT, a short name) with its checksums checked;
        `report` gets its progress. Raises a GatewayError when it cannot."""
        ...

    async def delete(self, name: str) -> None:
        """Remove the files of the model `name` means on this machine (ModelNotFound when none; Conflict
        while a running service uses it)."""
        ...

    def details(self, served: str) -> ModelDetails | None:
        """What the running stack knows of the model behind the served name; None when it serves none."""
        ...

    def saved_aliases(self) -> Mapping[str, str]:
        """Aliases `/api/copy` added before a restart whose targets the stack still serves."""
        ...

    def save_aliases(self, aliases: Mapping[str, str]) -> None:
        """Keep the aliases added at run time (all of them, replacing what was kept)."""
        ...
