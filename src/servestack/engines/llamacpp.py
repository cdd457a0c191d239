"""llama.cpp through llama-cpp-python's OpenAI server (`python -m llama_cpp.server`).

Facts (reference/engines.md §1.5): flags are pydantic field names with underscores; the model is
loaded before the HTTP socket opens, so "connection refused" means loading and any 200 means
ready; no /health, no tensor parallelism, no memory fraction, no /metrics.
The API key goes through the `API_KEY` environment variable (pydantic settings), out of the process list.

Behind a gateway, its default `interrupt_requests` (on) is a trap: it ends the stream in progress,
cutting the connection mid-body, as soon as another request waits for the model — a second client,
or a health probe of `/v1/models`, which takes the same lock. So the command turns it off, and
probes go to `/docs`, which holds no lock and needs no key.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from servestack.engines.base import (
    EngineCommand,
    EngineConfig,
    ProbeResult,
    Readiness,
    classify,
    first_version,
    refuse_unsupported,
    require_port,
)
from servestack.errors import EngineError
from servestack.stack import Service

ALL_LAYERS = "-1"
SUPPORTED = frozenset({"context_length", "api_key"})


class LlamaCppPythonEngine:
    name: str = "llamacpp"
    display_name: str = "llama.cpp (llama-cpp-python)"
    health_path: str = "/docs"  # lock-free, unlike /v1/models (see above)
    metrics_path: str | None = None  # llama-cpp-python has no /metrics
    metric_names: Mapping[str, str] = MappingProxyType({})
    checked_flags: tuple[str, ...] = ()
    probe_log_lines: tuple[str, ...] = ('"GET /docs HTTP/1.1"',)  # uvicorn's access log line for each probe
    install_hint: str = "pip install 'servestack[llamacpp]'  (llama-cpp-python with its server)"

    def command(self, service: Service, config: EngineConfig) -> EngineCommand:
        if config.tp > 1:
            raise EngineError(
                f"{self.display_name} has no tensor parallelism (tp: {config.tp})",
                fix="remove `tp`; list several `gpus` to split layers across them",
            )
        if config.memory_fraction is not None:
            raise EngineError(
                f"{self.display_name} has no GPU memory fraction (memory_fraction: {config.memory_fraction})",
                fix="remove `memory_fraction`; memory is set by the model size and context_length",
            )
        refuse_unsupported(self.display_name, service, config, SUPPORTED)
        args = [
            "--model", config.model,
            "--model_alias", config.served_names[0],
            "--host", config.host,
            "--port", str(require_port(config)),
            # Layers go to the GPU only when the plan gave the service GPUs; otherwise run on the CPU.
            "--n_gpu_layers", ALL_LAYERS if config.gpus else "0",
            "--interrupt_requests", "False",  # queue a second request instead of cutting the first
        ]  # fmt: skip
        if config.context_length is not None:
            args += ["--n_ctx", str(config.context_length)]
        env = {"API_KEY": service.api_key} if service.api_key else {}
        return EngineCommand(kind="module", entry="llama_cpp.server", args=[*args, *service.args], env=env)

    def readiness(self, probe: ProbeResult) -> Readiness:
        return classify(probe)

    def version_command(self, service: Service) -> EngineCommand:
        return EngineCommand(kind="script", entry="import llama_cpp; print(llama_cpp.__version__)", args=[])

    def parse_version(self, output: str) -> str | None:
        return first_version(output)

    def help_command(self, service: Service) -> EngineCommand:
        return EngineCommand(kind="module", entry="llama_cpp.server", args=["--help"])
