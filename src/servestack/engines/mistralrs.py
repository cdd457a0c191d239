"""mistral.rs: `mistralrs serve` (v0.9+, engine `mistralrs`) and `mistralrs-server` (≤ v0.8, engine
`mistralrs-server`).

Two engine names because the two generations take different command lines (the old server picks the
loader with a subcommand: `gguf -m DIR -f FILE`), the old binary was removed upstream in 2026, and
deployments pinned to it (seed 003: v0.6.0) must keep working; guessing the generation from a
version probe would make the command depend on I/O.

Facts (reference/engines.md §1.3): the listener is bound only after the model loaded (refused while
loading, then `/health` 200). No served-name flag, no API key, parsers chosen from the model family.
Tensor parallelism has no size flag: NCCL uses every visible GPU, so TP = the number of GPUs given.
`/metrics` exists only in v0.9+.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from types import MappingProxyType

from servestack.dialect import Dialect
from servestack.engines.base import (
    EngineCommand,
    EngineConfig,
    EngineFlags,
    Parallelism,
    ProbeResult,
    Readiness,
    Refusal,
    classify,
    first_version,
    flag,
    refuse,
    require_port,
    unsupported,
)
from servestack.engines.memory.mistralrs import OLD_SERVER_FLAGS, MistralRsMemory
from servestack.engines.startup.mistralrs import MistralRsStartupLog
from servestack.engines.tp import HEADS_ONLY
from servestack.stack import NativeRuntime, Service

# The stack's dtype names → mistral.rs's spelling of them ("auto" passes no flag).
MISTRALRS_DTYPES = {"bfloat16": "bf16", "float16": "f16", "float32": "f32"}

UNSUPPORTED_FIX = (
    "remove them: mistral.rs picks tool-call and reasoning formats from the model family, has no "
    "served-name or API-key flag (the gateway's keys protect it); pass its own flags in `args`"
)


# `mistralrs serve` (v0.9+); `mistralrs-server` has no context flag and names its fraction differently.
CONTEXT, FRACTION = "--max-seq-len", "--pa-memory-fraction"
SERVER_FRACTION = "--pa-gpu-mem-usage"

# What `mistralrs serve` accepts (mistralrs-server-core/src/openai.rs): `max_completion_tokens` as an alias
# of `max_tokens`, `n`, json_schema and json_object response formats, tools, logprobs, content parts; it
# reads no `stream_options` and puts the usage on its last stream chunk unasked.
DIALECT = Dialect()
# `mistralrs-server` ≤ v0.8: the alias of `max_tokens` is newer than some of its releases (seed 003 pins
# v0.6.0), and renaming the field is right for every release, so the gateway sends `max_tokens`.
SERVER_DIALECT = Dialect(output_limit="max_tokens")


def gguf_parts(model: str) -> tuple[str, str] | None:
    """(folder, file) for a model given as a .gguf file path."""
    if not model.lower().endswith(".gguf"):
        return None
    folder, file = posixpath.split(model)
    return folder or ".", file


def _refusals(display_name: str, service: Service, config: EngineConfig, supported: frozenset[str]) -> list[Refusal]:
    found = unsupported(display_name, service, config, supported, fix=UNSUPPORTED_FIX)
    if config.tp > 1 and len(config.gpus) != config.tp:
        message = (
            f"{display_name} splits a model over every visible GPU: tp {config.tp} needs exactly {config.tp} gpus "
            f"(got {len(config.gpus)})"
        )
        found.append(Refusal(("tp",), message, f"list {config.tp} GPUs in `gpus`, or drop `tp`"))
    return found


def _binary(service: Service, default: str) -> str:
    runtime = service.runtime
    return runtime.binary if isinstance(runtime, NativeRuntime) and runtime.binary else default


class MistralRsEngine:
    """`mistralrs serve` (mistral.rs v0.9+)."""

    name: str = "mistralrs"
    display_name: str = "mistral.rs"
    health_path: str = "/health"
    metrics_path: str | None = "/metrics"
    metric_names: Mapping[str, str] = MappingProxyType(
        {
            "waiting": "mistralrs_sequences_waiting",
            "running": "mistralrs_sequences_running",
            "ttft": "mistralrs_time_to_first_token_seconds",
        }
    )
    checked_flags: tuple[str, ...] = ()
    probe_log_lines: tuple[str, ...] = ()  # its request log format is not checked here: none hidden
    install_hint: str = "install mistral.rs v0.9+ (cargo install mistralrs-cli, or its release binaries)"
    flags = EngineFlags(context=CONTEXT, tp=None, fraction=FRACTION)  # TP = the visible GPUs
    parallelism = Parallelism.TENSOR
    tp_rules = HEADS_ONLY
    memory = MistralRsMemory()
    startup_log = MistralRsStartupLog()
    dialect = DIALECT
    native_routes: tuple[str, ...] = ()
    sleep = None  # no way to free its memory but to stop
    weight_formats: tuple[str, ...] = ("safetensors", "gguf")
    supported = frozenset({"tp", "context_length", "memory_fraction", "dtype", "quantization", "chat_template"})

    def refusals(self, service: Service, config: EngineConfig) -> list[Refusal]:
        return _refusals(self.display_name, service, config, self.supported)

    def command(self, service: Service, config: EngineConfig) -> EngineCommand:
        refuse(self.refusals(service, config))
        gguf = gguf_parts(config.model)
        model = ["-m", gguf[0], "--format", "gguf", "-f", gguf[1]] if gguf else ["-m", config.model]
        args = [
            "serve",
            "--host", config.host,
            "--port", str(require_port(config)),
            *model,
            *flag(CONTEXT, config.context_length),
            *flag(FRACTION, config.memory_fraction),
            *flag("--dtype", MISTRALRS_DTYPES.get(service.dtype)),
            *flag("--isq", service.quantization),
            *flag("--chat-template", service.chat_template),
        ]  # fmt: skip
        return EngineCommand(kind="binary", entry=_binary(service, "mistralrs"), args=[*args, *service.args])

    def readiness(self, probe: ProbeResult) -> Readiness:
        return classify(probe)

    def version_command(self, service: Service) -> EngineCommand:
        return EngineCommand(kind="binary", entry=_binary(service, "mistralrs"), args=["--version"])

    def parse_version(self, output: str) -> str | None:
        return first_version(output)

    def help_command(self, service: Service) -> EngineCommand:
        return EngineCommand(kind="binary", entry=_binary(service, "mistralrs"), args=["serve", "--help"])


class MistralRsServerEngine:
    """`mistralrs-server` (mistral.rs ≤ v0.8; seed 003 pins v0.6.0)."""

    name: str = "mistralrs-server"
    display_name: str = "mistral.rs (mistralrs-server)"
    health_path: str = "/health"
    metrics_path: str | None = None  # no /metrics before v0.9
    metric_names: Mapping[str, str] = MappingProxyType({})
    checked_flags: tuple[str, ...] = ()
    probe_log_lines: tuple[str, ...] = ()  # its request log format is not checked here: none hidden
    install_hint: str = "build mistral.rs ≤ v0.8 (the `mistralrs-server` binary), or use engine `mistralrs`"
    flags = EngineFlags(context=None, tp=None, fraction=SERVER_FRACTION)
    parallelism = Parallelism.TENSOR
    tp_rules = HEADS_ONLY
    memory = MistralRsMemory(OLD_SERVER_FLAGS, pool_by_context=True)
    startup_log = MistralRsStartupLog()
    dialect = SERVER_DIALECT
    native_routes: tuple[str, ...] = ()
    sleep = None  # no way to free its memory but to stop
    weight_formats: tuple[str, ...] = ("safetensors", "gguf")
    supported = frozenset({"tp", "memory_fraction", "quantization", "chat_template"})

    def refusals(self, service: Service, config: EngineConfig) -> list[Refusal]:
        return _refusals(self.display_name, service, config, self.supported)

    def command(self, service: Service, config: EngineConfig) -> EngineCommand:
        refuse(self.refusals(service, config))
        gguf = gguf_parts(config.model)
        loader = ["gguf", "-m", gguf[0], "-f", gguf[1]] if gguf else ["plain", "-m", config.model]
        args = [
            "--serve-ip", config.host,
            "--port", str(require_port(config)),
            *flag(SERVER_FRACTION, config.memory_fraction),
            *flag("--isq", service.quantization),
            *flag("--chat-template", service.chat_template),
            *service.args,  # server options go before the loader subcommand
            *loader,
        ]  # fmt: skip
        return EngineCommand(kind="binary", entry=_binary(service, "mistralrs-server"), args=args)

    def readiness(self, probe: ProbeResult) -> Readiness:
        return classify(probe)

    def version_command(self, service: Service) -> EngineCommand:
        return EngineCommand(kind="binary", entry=_binary(service, "mistralrs-server"), args=["--version"])

    def parse_version(self, output: str) -> str | None:
        return first_version(output)

    def help_command(self, service: Service) -> EngineCommand:
        return EngineCommand(kind="binary", entry=_binary(service, "mistralrs-server"), args=["--help"])
