"""SGLang (`python -m sglang.launch_server`).

Facts (reference/engines.md §1.1): the HTTP socket opens only after weights, KV pool and CUDA graphs
are ready (connection refused while loading), then `/health` answers 503 until warm-up ends, then
200. `/metrics` exists only with `--enable-metrics`. Parser choices grow with versions (GLM-4.7's
`glm47` tool-call parser is newer than late 2025), so they are checked against `--help`.
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
from servestack.engines.memory.sglang import SglangMemory
from servestack.engines.sleep import HttpCall, SleepMode
from servestack.engines.startup.sglang import SglangStartupLog
from servestack.engines.tp import SHARDED
from servestack.stack import Service

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
CONTEXT, TP, FRACTION = "--context-length", "--tp-size", "--mem-fraction-static"


class SGLangEngine:
    name: str = "sglang"
    display_name: str = "SGLang"
    health_path: str = "/health"
    metrics_path: str | None = "/metrics"
    metric_names: Mapping[str, str] = MappingProxyType(
        {
            "waiting": "sglang:num_queue_reqs",
            "running": "sglang:num_running_reqs",
            "kv_usage": "sglang:token_usage",
            "ttft": "sglang:time_to_first_token_seconds",
            "prompt_tokens": "sglang:prompt_tokens_total",
            "generation_tokens": "sglang:generation_tokens_total",
        }
    )
    checked_flags: tuple[str, ...] = ("--tool-call-parser", "--reasoning-parser")
    probe_log_lines: tuple[str, ...] = ('"GET /health HTTP/1.1"', '"GET /metrics HTTP/1.1"')  # uvicorn's access log
    install_hint: str = "upgrade SGLang: pip install -U 'sglang[all]' (or a newer lmsysorg/sglang image)"
    flags = EngineFlags(context=CONTEXT, tp=TP, fraction=FRACTION)
    parallelism = Parallelism.TENSOR
    tp_rules = SHARDED
    memory = SglangMemory()
    startup_log = SglangStartupLog()
    dialect = OPENAI  # it takes today's request as it is (srt/entrypoints/openai/protocol.py)
    native_routes: tuple[str, ...] = ("/generate",)  # SGLang's own API, passed through (gateway/sglang/routes.py)
    # The memory saver releases weights and KV; the CPU backup (0.5.3+) keeps the weights to resume from.
    sleep = SleepMode(
        flags=("--enable-memory-saver", "--enable-weights-cpu-backup"),
        sleep=HttpCall("POST", "/release_memory_occupation", {}),
        wake=HttpCall("POST", "/resume_memory_occupation", {}),
    )
    weight_formats: tuple[str, ...] = ("safetensors", "gguf")

    def refusals(self, service: Service, config: EngineConfig) -> list[Refusal]:
        return unsupported(self.display_name, service, config, SUPPORTED)

    def command(self, service: Service, config: EngineConfig) -> EngineCommand:
        refuse(self.refusals(service, config))
        # SGLang takes one served name; the engine's default (the model path) needs no flag.
        # The order follows the seeds' own commands (examples/README.md).
        served = config.served_names[0] if config.served_names and config.served_names[0] != config.model else None
        args = [
            "--model-path", config.model,
            *flag("--served-model-name", served),
            "--host", config.host,
            "--port", str(require_port(config)),
            TP, str(config.tp),
            *flag(CONTEXT, config.context_length),
            *flag("--dtype", explicit(service.dtype)),
            *flag("--kv-cache-dtype", explicit(service.kv_cache_dtype)),
            *flag("--quantization", service.quantization),
            *(["--trust-remote-code"] if service.trust_remote_code else []),
            *flag("--chat-template", service.chat_template),
            *flag("--tool-call-parser", service.tool_call_parser),
            *flag("--reasoning-parser", service.reasoning_parser),
            *flag(FRACTION, config.memory_fraction),
            *flag("--api-key", service.api_key),
            *(["--enable-metrics"] if config.metrics else []),
        ]  # fmt: skip
        return EngineCommand(kind="module", entry="sglang.launch_server", args=[*args, *service.args])

    def readiness(self, probe: ProbeResult) -> Readiness:
        return classify(probe, loading=frozenset({503}))

    def version_command(self, service: Service) -> EngineCommand:
        return EngineCommand(kind="script", entry="import sglang; print(sglang.__version__)", args=[])

    def parse_version(self, output: str) -> str | None:
        return first_version(output)

    def help_command(self, service: Service) -> EngineCommand:
        return EngineCommand(kind="module", entry="sglang.launch_server", args=["--help"])
