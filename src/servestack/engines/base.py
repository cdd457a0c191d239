"""The contract every engine adapter implements, and the data that crosses it.

An engine adapter is pure knowledge: how to build the engine's command from a service and what the
plan decided (`EngineConfig`), and how to read the engine's answers to a readiness probe. It starts
nothing itself: the runtime wraps the command, the supervisor runs it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Literal, Protocol

from servestack.stack import Service


class Readiness(Enum):
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"


@dataclass(frozen=True)
class ProbeResult:
    """One readiness probe: `status` is None when the connection was refused or reset."""

    status: int | None
    body: bytes = b""


@dataclass(frozen=True)
class EngineConfig:
    """What the plan decided for one engine process.

    `model` is already resolved (a local path or a hub id). `port` is None until the supervisor
    picks a free one at launch.
    """

    model: str
    served_names: tuple[str, ...]
    host: str = "127.0.0.1"
    port: int | None = None
    gpus: tuple[int, ...] = ()
    tp: int = 1
    context_length: int | None = None
    memory_fraction: float | None = None


@dataclass(frozen=True)
class EngineCommand:
    """An engine invocation before a runtime wraps it.

    `kind` says how `entry` is run: `module` → `python -m entry`, `binary` → an executable name.
    """

    kind: Literal["module", "binary"]
    entry: str
    args: list[str]
    env: dict[str, str] = field(default_factory=dict)


class Engine(Protocol):
    """One inference engine (llama.cpp, vLLM, SGLang, mistral.rs, the simulator)."""

    name: str
    display_name: str
    health_path: str
    metrics_path: str | None
    # Common metric name (waiting, running, kv_usage, ...) → the engine's own Prometheus name.
    metric_names: Mapping[str, str]

    def command(self, service: Service, config: EngineConfig) -> EngineCommand:
        """Build the engine's command; raise EngineError for settings this engine cannot honour."""
        ...

    def readiness(self, probe: ProbeResult) -> Readiness:
        """Classify one probe of `health_path` while the engine process is alive."""
        ...
