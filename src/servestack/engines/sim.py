"""The engine simulator (`python -m servestack.sim`): vLLM's API with a latency model, for tests and laptops.

Facts: it binds its port at once but listens only when "loaded" (`--slow-start`), like vLLM, so a
refused connection means loading; with `--warmup` /health answers 503 for a while, like SGLang; then
/health is 200. /metrics is always on, under vLLM's names. Latency and fault settings come from the
service's `args` (`--prefill-rate 4000 --decode-rate 40 --error-rate 0.01 …`, see `servestack sim
--help`). It needs no GPU: `gpus`, `tp` and `memory_fraction` are accepted and have no effect on it (the planner
takes its `memory_fraction` as its claim of each GPU it names, and with `tp` and no `gpus` places it on `tp` free
GPUs per replica, a stand-in for a tensor-parallel engine: plan/placement.py). With `--enable-sleep-mode` it answers
vLLM's `/sleep` and `/wake_up`, a wake taking `--wake-time` where a start takes `--slow-start`.
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
    Unchecked,
    first_version,
)
from servestack.engines.sleep import HttpCall, SleepMode
from servestack.engines.startup import Silent
from servestack.errors import EngineError
from servestack.stack import Service

METRIC_NAMES = MappingProxyType(
    {
        "waiting": "vllm:num_requests_waiting",
        "running": "vllm:num_requests_running",
        "kv_usage": "vllm:kv_cache_usage_perc",
        "ttft": "vllm:time_to_first_token_seconds",
        "prompt_tokens": "vllm:prompt_tokens_total",
        "generation_tokens": "vllm:generation_tokens_total",
        "prefix_cache_queries": "vllm:prefix_cache_queries_total",
        "prefix_cache_hits": "vllm:prefix_cache_hits_total",
    }
)
CONTEXT = "--max-model-len"
# What the simulator reads of a request (sim/protocol.py): the limits, the prompt's text, `stream_options`;
# it has no grammar, tools, logprobs or embeddings to offer, so those are refused rather than answered with
# plain text.
DIALECT = Dialect(json_output="none", tools=False, logprobs=False, images=False, embeddings=False)


class SimEngine:
    name: str = "sim"
    display_name: str = "servestack engine simulator"
    health_path: str = "/health"
    metrics_path: str | None = "/metrics"
    metric_names: Mapping[str, str] = METRIC_NAMES
    checked_flags: tuple[str, ...] = ()  # ships with servestack: always the matching version
    probe_log_lines: tuple[str, ...] = ()  # its access log is off
    install_hint: str = "part of servestack itself: reinstall servestack"
    flags = EngineFlags(context=CONTEXT, tp=None, fraction=None)
    parallelism = Parallelism.NONE
    tp_rules = ()
    memory = Unchecked(
        "the simulator puts no model on a GPU; its memory_fraction is taken as its claim of each GPU it names "
        "(to plan sharing and on-demand loading) and has no other effect"
    )
    startup_log = Silent("the simulator allocates no KV cache and loads no weights")
    dialect = DIALECT
    native_routes: tuple[str, ...] = ()
    sleep = SleepMode(  # vLLM's routes and flag (docs/sim.md): a wake takes --wake-time, a load --slow-start
        flags=("--enable-sleep-mode",), sleep=HttpCall("POST", "/sleep?level=1"), wake=HttpCall("POST", "/wake_up")
    )
    weight_formats: tuple[str, ...] = ()  # it loads no weights: its `model` is a name

    def refusals(self, service: Service, config: EngineConfig) -> list[Refusal]:
        return []  # it runs anything: GPU settings have no effect

    def command(self, service: Service, config: EngineConfig) -> EngineCommand:
        if config.port is None:
            raise EngineError("internal: the engine port must be chosen before building the command")
        args = ["--host", config.host, "--port", str(config.port), "--root", config.model]
        for name in config.served_names:
            args += ["--model", name]
        if config.context_length is not None:
            args += [CONTEXT, str(config.context_length)]
        return EngineCommand(kind="module", entry="servestack.sim", args=[*args, *service.args])

    def readiness(self, probe: ProbeResult) -> Readiness:
        # Refused (loading) and 503 (warming up) both mean "not yet"; a crash shows as the process exiting.
        return Readiness.READY if probe.status == 200 else Readiness.LOADING

    def version_command(self, service: Service) -> EngineCommand:
        return EngineCommand(kind="script", entry="import servestack; print(servestack.__version__)", args=[])

    def parse_version(self, output: str) -> str | None:
        return first_version(output)

    def help_command(self, service: Service) -> EngineCommand:
        return EngineCommand(kind="module", entry="servestack.sim", args=["--help"])
