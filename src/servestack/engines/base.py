"""The contract every engine adapter implements, and the data that crosses it.

An engine adapter is pure knowledge: how to build the engine's command from a service and what the
plan decided (`EngineConfig`), how to read the engine's answers to a readiness probe, which metric
names it exports, how to ask its version and its `--help`. It starts nothing itself: the runtime
wraps the command, the supervisor runs it (and runs the version and help commands, in
`supervisor/preflight.py`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Literal, Protocol

from servestack.dialect import Dialect
from servestack.errors import EngineError
from servestack.stack import Service

if TYPE_CHECKING:
    from servestack.engines.memory import MemoryRule
    from servestack.engines.sleep import SleepMode
    from servestack.engines.startup import Silent, StartupLog
    from servestack.engines.tp import TpRule

# The common metric names the gateway and `status` use; each engine maps some of them to its own.
METRICS = (
    "waiting",
    "running",
    "kv_usage",
    "ttft",
    "prompt_tokens",
    "generation_tokens",
    "prefix_cache_queries",
    "prefix_cache_hits",
)


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
    picks a free one at launch. What the user wrote verbatim (parsers, chat template, dtype,
    quantization, API key) is read from the Service itself.
    """

    model: str
    served_names: tuple[str, ...]
    host: str = "127.0.0.1"
    port: int | None = None
    gpus: tuple[int, ...] = ()
    tp: int = 1
    context_length: int | None = None
    memory_fraction: float | None = None
    metrics: bool = False  # ask engines whose /metrics is off by default (SGLang) to turn it on


@dataclass(frozen=True)
class EngineCommand:
    """An engine invocation before a runtime wraps it.

    `kind` says how `entry` is run: `module` → `python -m entry`, `script` → `python -c entry`,
    `binary` → an executable name.
    """

    kind: Literal["module", "binary", "script"]
    entry: str
    args: list[str]
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Refusal:
    """A setting an engine cannot honour: its stack keys (under the service), why, and what to do.

    `command` raises the first refusal as an EngineError; the planner asks for all of them, so that
    `plan` reports, with the file and line, exactly what `up` would refuse.
    """

    settings: tuple[str, ...]
    message: str
    fix: str


class Parallelism(Enum):
    """How an engine spreads one model over the GPUs it is given."""

    TENSOR = "tensor"  # one rank per GPU: TP equals the number of GPUs
    LAYERS = "layers"  # whole layers split over the GPUs listed, no TP
    NONE = "none"  # needs no GPU at all


@dataclass(frozen=True)
class EngineFlags:
    """The engine's flags for what the planner decides: the one spelling both the command and the plan use.

    None: the engine has no such flag (mistral.rs takes TP from the visible GPUs, llama.cpp has no fraction).
    """

    context: str | None
    tp: str | None
    fraction: str | None


@dataclass(frozen=True)
class Unchecked:
    """An engine whose memory the planner does not model, and why (`plan` says so as a warning)."""

    reason: str


class Engine(Protocol):
    """One inference engine (llama.cpp, vLLM, SGLang, mistral.rs, the simulator).

    Everything servestack knows about an engine is declared on its adapter: the command and its flags,
    readiness, metric names, TP rules, memory rule, what its startup log states, its request dialect, its native
    routes.
    """

    name: str
    display_name: str
    health_path: str
    metrics_path: str | None
    # Common metric name (one of METRICS) → the engine's own Prometheus name.
    metric_names: Mapping[str, str]
    # Flags whose values depend on the installed version; checked against `--help` before start.
    checked_flags: tuple[str, ...]
    # What the engine logs for each of servestack's own probes (health, metrics), as substrings of
    # those lines: `logs` and the crash reports leave them out. Empty: it logs none.
    probe_log_lines: tuple[str, ...]
    install_hint: str
    # The weight formats it loads, preferred first ("gguf", "safetensors"): a short model name without a
    # quant (`qwen2.5-coder:32b`) means the first of them. Empty: it loads no weights.
    weight_formats: tuple[str, ...]

    # What the planner and the gateway read (read-only, so an adapter declares them as plain class attributes).
    @property
    def flags(self) -> EngineFlags: ...

    @property
    def parallelism(self) -> Parallelism: ...

    @property
    def tp_rules(self) -> tuple[TpRule, ...]:
        """The engine's sharding rules, each a pure function (`engines/tp.py`); empty: any TP is valid."""
        ...

    @property
    def memory(self) -> MemoryRule | Unchecked: ...

    @property
    def startup_log(self) -> StartupLog | Silent:
        """The reader of what the engine's log says it allocated at start (`engines/startup/`), or why there is none."""
        ...

    @property
    def dialect(self) -> Dialect:
        """What its OpenAI server accepts of today's request shape (the gateway maps requests onto it)."""
        ...

    @property
    def native_routes(self) -> tuple[str, ...]:
        """Engine-specific HTTP routes the gateway passes through to this engine's services."""
        ...

    @property
    def sleep(self) -> SleepMode | None:
        """How the engine frees its GPU memory while it keeps running (`engines/sleep.py`); None: it cannot."""
        ...

    def refusals(self, service: Service, config: EngineConfig) -> list[Refusal]:
        """The settings this engine cannot honour (empty: it can run them). Pure."""
        ...

    def command(self, service: Service, config: EngineConfig) -> EngineCommand:
        """Build the engine's command; raise EngineError for the first of its `refusals`."""
        ...

    def readiness(self, probe: ProbeResult) -> Readiness:
        """Classify one probe of `health_path` while the engine process is alive."""
        ...

    def version_command(self, service: Service) -> EngineCommand:
        """A command that prints the installed version (run by the same runtime as the engine)."""
        ...

    def parse_version(self, output: str) -> str | None:
        """The version in the version command's output (stdout and stderr together)."""
        ...

    def help_command(self, service: Service) -> EngineCommand:
        """A command that prints the engine's `--help`, for `checked_flags`."""
        ...


def classify(probe: ProbeResult, *, loading: frozenset[int] = frozenset()) -> Readiness:
    """The usual rule: refused → loading; 2xx → ready; a status in `loading` → loading; else failed."""
    if probe.status is None or probe.status in loading:
        return Readiness.LOADING
    if 200 <= probe.status < 300:
        return Readiness.READY
    return Readiness.FAILED


_VERSION = re.compile(r"\b(\d+\.\d+(?:\.\d+)?(?:[.+-]?[A-Za-z0-9]+)*)")


def first_version(output: str) -> str | None:
    """The first dotted version number in `output` (`0.5.7`, `0.32.0+cpu`)."""
    match = _VERSION.search(output)
    return match.group(1) if match else None


def settings_in_use(service: Service, config: EngineConfig) -> dict[str, bool]:
    """Which of the engine-facing settings a service uses (by their stack-file key)."""
    return {
        "tp": config.tp > 1,
        "context_length": config.context_length is not None,
        "memory_fraction": config.memory_fraction is not None,
        "dtype": explicit(service.dtype) is not None,
        "kv_cache_dtype": explicit(service.kv_cache_dtype) is not None,
        "quantization": service.quantization is not None,
        "chat_template": service.chat_template is not None,
        "tool_call_parser": service.tool_call_parser is not None,
        "reasoning_parser": service.reasoning_parser is not None,
        "api_key": service.api_key is not None,
    }


def unsupported(
    display_name: str, service: Service, config: EngineConfig, supported: frozenset[str], *, fix: str = ""
) -> list[Refusal]:
    """One refusal naming every setting in use that this engine has no flag for (none: empty)."""
    keys = tuple(key for key, used in settings_in_use(service, config).items() if used and key not in supported)
    if not keys:
        return []
    fix = fix or "remove these keys from the service (or pass the engine's own flags in `args`)"
    return [Refusal(keys, f"{display_name} has no setting for: {', '.join(keys)}", fix)]


def refuse(refusals: Sequence[Refusal]) -> None:
    """Raise the first refusal as an EngineError (nothing when there is none)."""
    if refusals:
        raise EngineError(refusals[0].message, fix=refusals[0].fix)


def require_port(config: EngineConfig) -> int:
    if config.port is None:
        raise EngineError("internal: the engine port must be chosen before building the command")
    return config.port


def explicit(value: str | None) -> str | None:
    """A dtype setting as a flag value: `auto` means the engine's own default, so no flag."""
    return None if value in (None, "auto") else value


def flag(name: str, value: object | None) -> list[str]:
    """`[name, value]`, or nothing when `value` is None."""
    return [] if value is None else [name, str(value)]
