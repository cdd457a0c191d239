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
    refuse,
    require_port,
    unsupported,
)
from servestack.engines.memory.llamacpp import LlamaCppFlags, LlamaCppMemory
from servestack.engines.startup.llamacpp import LlamaCppStartupLog
from servestack.engines.tp import LAYER_SPLIT
from servestack.stack import Service

ALL_LAYERS = "-1"
SUPPORTED = frozenset({"context_length", "api_key"})
EXPLAINED = frozenset({"tp", "memory_fraction"})  # refused with a reason of their own
CONTEXT = "--n_ctx"
DEFAULT_CONTEXT = 2048  # llama-cpp-python's `--n_ctx` default
# Its names for the llama.cpp settings that change memory (pydantic fields; `--type_k` takes a ggml type id).
MEMORY_FLAGS = LlamaCppFlags(
    gpu_layers=("--n_gpu_layers",),
    tensor_split=("--tensor_split",),
    cache_k=("--type_k",),
    cache_v=("--type_v",),
    batch=("--n_batch",),
    ubatch=("--n_ubatch",),
    parallel=(),
    flash_attn=("--flash_attn",),
    defaults=(512, 512),
)

# What its server accepts (llama_cpp/server/types.py, app.py and llama_chat_format.py of 0.3.36; each
# checked against the running server): `max_tokens` only (`max_completion_tokens` is not a field, so the
# answer runs to the end of text); a message's content only as a string (its Jinja chat formatter
# concatenates it: a list is a 500 "can only concatenate str", and on a stream a 200 with no event at
# all; null in an assistant message fails validation) and no image without a llava chat handler, which
# servestack does not configure; roles system/user/assistant/tool/function (`developer` fails
# validation); `response_format` types text and json_object, the latter with an optional `schema` that
# becomes a grammar; tools with a named `tool_choice` (a grammar), `"required"` is ignored; `n` is read
# and dropped; no usage chunk on streams; `X-Request-Id` must parse as a UUID (starlette-context's
# RequestIdPlugin: anything else is a bare 400); embeddings only when started with `--embedding`, which
# servestack does not pass (a chat model); every exception in a route, its request validation
# included, is a 500 with the exception's text, so those texts tell the request's faults apart.
DIALECT = Dialect(
    output_limit="max_tokens",
    text_content=True,
    images=False,
    developer_role=False,
    json_output="schema_in_json_object",
    tool_choice_required=False,
    choices=False,
    stream_usage=False,
    embeddings=False,
    request_ids="uuid",
    invalid_request_errors=(
        r"^\d+ validation errors?",  # pydantic's RequestValidationError, rendered by its RouteErrorHandler
        r"can only concatenate str",  # content of a type its chat formatter cannot join
        r"^Tool choice '.*' not found in tools",
        r"^logprobs is not supported",
    ),
)


class LlamaCppPythonEngine:
    name: str = "llamacpp"
    display_name: str = "llama.cpp (llama-cpp-python)"
    health_path: str = "/docs"  # lock-free, unlike /v1/models (see above)
    metrics_path: str | None = None  # llama-cpp-python has no /metrics
    metric_names: Mapping[str, str] = MappingProxyType({})
    checked_flags: tuple[str, ...] = ()
    probe_log_lines: tuple[str, ...] = ('"GET /docs HTTP/1.1"',)  # uvicorn's access log line for each probe
    install_hint: str = "pip install 'servestack[llamacpp]'  (llama-cpp-python with its server)"
    flags = EngineFlags(context=CONTEXT, tp=None, fraction=None)
    parallelism = Parallelism.LAYERS
    tp_rules = LAYER_SPLIT
    memory = LlamaCppMemory(fixed_context=DEFAULT_CONTEXT, flags=MEMORY_FLAGS)
    startup_log = LlamaCppStartupLog()
    dialect = DIALECT
    native_routes: tuple[str, ...] = ()
    sleep = None  # no way to free its memory but to stop
    weight_formats: tuple[str, ...] = ("gguf",)

    def refusals(self, service: Service, config: EngineConfig) -> list[Refusal]:
        found = []
        if config.tp > 1:
            message = f"{self.display_name} has no tensor parallelism (tp: {config.tp})"
            found.append(Refusal(("tp",), message, "remove `tp`; list several `gpus` to split layers across them"))
        if config.memory_fraction is not None:
            message = f"{self.display_name} has no GPU memory fraction (memory_fraction: {config.memory_fraction})"
            fix = "remove `memory_fraction`; memory is set by the model size and context_length"
            found.append(Refusal(("memory_fraction",), message, fix))
        return found + unsupported(self.display_name, service, config, SUPPORTED | EXPLAINED)

    def command(self, service: Service, config: EngineConfig) -> EngineCommand:
        refuse(self.refusals(service, config))
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
            args += [CONTEXT, str(config.context_length)]
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
