"""The stack file schema (version 1): what a user writes, as frozen pydantic models.

Every model forbids unknown keys so that a typo (`contxt_length`) is an error naming the key.
Values derived from the stack (ports chosen, GPUs placed, flags computed) belong to the Plan;
a Stack is never mutated after loading.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, PrivateAttr, field_validator, model_validator

from servestack.stack.gateway_schema import (
    AuthConfig,
    ConsoleConfig,
    LimitsConfig,
    LogsConfig,
    MetricsConfig,
    TimeoutsConfig,
    TracingConfig,
    UsageConfig,
)
from servestack.stack.ondemand_schema import Duration, KeepAlive, PositiveDuration
from servestack.stack.request_defaults import RequestDefaults
from servestack.stack.runtime_schema import NativeRuntime, RuntimeSpec
from servestack.stack.source import KeyPath, SourceMap
from servestack.stack.strict import Strict as _Strict

SERVICE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

EngineName = Literal["llamacpp", "llama-server", "vllm", "sglang", "mistralrs", "mistralrs-server", "sim"]
RestartPolicy = Literal["always", "on-failure", "never"]
LoadPolicy = Literal["always", "on-demand"]
UnloadMode = Literal["stop", "sleep"]
DType = Literal["auto", "bfloat16", "float16", "float32"]
KvCacheDType = Literal["auto", "bfloat16", "float16", "fp8", "fp8_e4m3", "fp8_e5m2", "q8_0", "q4_0"]
QUANTIZATION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
Port = Annotated[int, Field(ge=1, le=65535)]


class Service(_Strict):
    """One entry of `services:`: an engine serving one model."""

    engine: EngineName
    model: str = Field(
        min_length=1,
        description="A local path, a HF id (ORG/NAME:QUANT for one GGUF quant), a short name "
        "(qwen2.5-coder:32b-q5_k_m), package:PKG/FILE or modelscope:ORG/NAME.",
    )
    served_names: list[str] = Field(
        default_factory=list, description="Names clients use in `model`; defaults to the service name."
    )
    host: str = Field(default="127.0.0.1", description="Interface the engine binds to.")
    port: Port | None = Field(default=None, description="Engine port; omitted → a free port is chosen.")
    gpus: list[Annotated[int, Field(ge=0)]] | None = Field(
        default=None, description="GPU indices for the engine (on a cluster: on the node it runs on)."
    )
    nodes: list[Annotated[str, Field(min_length=1)]] | None = Field(
        default=None,
        description="On a cluster: the nodes it may run on, each a node id, a custom resource the node has (a "
        "label), a node label KEY=VALUE, or the node's IP address.",
    )
    tp: Annotated[int, Field(ge=1)] | None = None
    context_length: Annotated[int, Field(gt=0)] | None = None
    memory_fraction: Annotated[float, Field(gt=0, le=1)] | None = None
    dtype: DType = Field(default="auto", description="Weight dtype; auto: the checkpoint's (float32 → bfloat16).")
    quantization: str | None = Field(
        default=None, description="Quantisation method (fp8, awq, gptq, …); omitted: as the checkpoint says."
    )
    kv_cache_dtype: KvCacheDType = Field(default="auto", description="KV-cache dtype; auto: the weight dtype.")
    chat_template: str | None = Field(default=None, description="A template file or an engine's built-in name.")
    tool_call_parser: str | None = None
    reasoning_parser: str | None = None
    trust_remote_code: bool = Field(
        default=False, description="Allow the model's own code to run (engines without such code ignore it)."
    )
    api_key: str | None = Field(default=None, description="Key the engine itself demands (write ${VAR}).")
    args: list[str] = Field(default_factory=list, description="Extra engine flags, passed through as given.")
    env: dict[str, str] = Field(default_factory=dict)
    runtime: RuntimeSpec = Field(default_factory=NativeRuntime)
    replicas: Annotated[int, Field(ge=1, le=64)] = 1
    restart: RestartPolicy = Field(
        default="on-failure", description="Bring the engine back when it exits: always, on-failure, never."
    )
    defaults: RequestDefaults = Field(
        default_factory=RequestDefaults, description="Sampling settings for requests that leave them out."
    )
    load: LoadPolicy = Field(
        default="always", description="always: started with the stack; on-demand: loaded by its first request."
    )
    keep_alive: KeepAlive = Field(
        default=300.0,
        description="How long an idle on-demand service stays loaded: 5m, 30s, 0 (unload at once), forever.",
    )
    priority: int = Field(default=0, description="On-demand services with a higher priority are evicted last.")
    unload: UnloadMode = Field(
        default="stop",
        description="How an on-demand service is unloaded: stop the engine, or sleep (the engine keeps running, "
        "its weights in host memory; vLLM and SGLang).",
    )

    @property
    def on_demand(self) -> bool:
        return self.load == "on-demand"

    @model_validator(mode="after")
    def _loading_keys_need_on_demand(self) -> Service:
        if self.on_demand:
            return self
        fields = type(self).model_fields
        written = [key for key in ("keep_alive", "priority", "unload") if getattr(self, key) != fields[key].default]
        if written:
            verb = "applies" if len(written) == 1 else "apply"
            raise ValueError(f"{', '.join(written)} {verb} only to on-demand services: add `load: on-demand`")
        return self

    @field_validator("served_names")
    @classmethod
    def _names_not_blank(cls, names: list[str]) -> list[str]:
        if any(not n.strip() for n in names):
            raise ValueError("served names must not be empty")
        if len(set(names)) != len(names):
            raise ValueError("served names must be unique")
        return names

    @field_validator("quantization")
    @classmethod
    def _quantization_name(cls, value: str | None) -> str | None:
        if value is not None and not QUANTIZATION.match(value):
            raise ValueError("quantization is a method name, e.g. fp8, awq, gptq (mistral.rs ISQ: Q4K)")
        return value

    @field_validator("args", mode="before")
    @classmethod
    def _args_as_strings(cls, args: object) -> object:
        # YAML turns `--tp 2` written as a list item `2` into an int; flags are strings.
        if isinstance(args, list):
            return [str(a) if isinstance(a, int | float) and not isinstance(a, bool) else a for a in args]
        return args

    @field_validator("env", mode="before")
    @classmethod
    def _env_as_strings(cls, env: object) -> object:
        if isinstance(env, dict):
            return {k: str(v) if isinstance(v, int | float | bool) else v for k, v in env.items()}
        return env


class GatewayConfig(_Strict):
    """The one HTTP endpoint clients talk to."""

    host: str = "127.0.0.1"
    port: Port = 8000
    auth: AuthConfig = Field(default_factory=AuthConfig)
    aliases: dict[str, str] = Field(default_factory=dict, description="Extra model names: alias → served name.")
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    timeouts: TimeoutsConfig = Field(default_factory=TimeoutsConfig)
    usage: UsageConfig = Field(default_factory=UsageConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    tracing: TracingConfig | None = None
    logs: LogsConfig = Field(default_factory=LogsConfig)
    console: ConsoleConfig = Field(default_factory=ConsoleConfig)
    load_timeout: PositiveDuration = Field(
        default=600.0, description="How long a request may wait for its on-demand model to load; then 503."
    )
    load_max_waiting: Annotated[int, Field(ge=1)] = Field(
        default=100, description="Requests that may wait for one service to load; past it 503 with Retry-After."
    )
    swap_hold: Duration = Field(
        default=30.0,
        description="When on-demand services that cannot be loaded together both have traffic, the loaded one "
        "keeps serving until its requests run out or another's request has waited this long; then they swap.",
    )
    load_keepalive: PositiveDuration = Field(
        default=10.0,
        description="An OpenAI stream waiting for its model to load gets an SSE comment line this often, so "
        "proxies and clients keep the connection open.",
    )


class ClusterConfig(_Strict):
    """A Ray cluster the stack's engines are placed on (install `servestack[ray]`); without it, this machine."""

    kind: Literal["ray"]
    address: str = Field(
        default="auto",
        min_length=1,
        description="auto (the cluster `ray start` runs on this machine), ray://HOST:10001 (Ray Client), "
        "or the head's HOST:PORT.",
    )
    namespace: str = Field(default="servestack", min_length=1, description="The Ray namespace of its actors.")
    placement_timeout: PositiveDuration = Field(
        default=60.0, description="How long a replica may wait for room on the cluster before its start fails."
    )


PolicyName = Literal["round_robin", "least_load", "cache_aware", "ttft_cost"]


class Routing(_Strict):
    """How the gateway spreads requests over the replicas serving one name, and how it handles failures."""

    policy: PolicyName = Field(default="ttft_cost", description="The policy of every served name not in `models`.")
    models: dict[str, PolicyName] = Field(default_factory=dict, description="Served name → its own policy.")
    retries: Annotated[int, Field(ge=0, le=5)] = Field(
        default=2, description="Other replicas tried when one fails before answering."
    )
    retry_budget: Annotated[float, Field(ge=0, le=1)] = Field(
        default=0.2, description="Retries may add at most this fraction to the requests (plus a small burst)."
    )
    failure_threshold: Annotated[int, Field(ge=1)] = Field(
        default=3, description="Consecutive failures that open a replica's circuit."
    )
    open_seconds: Annotated[float, Field(gt=0)] = Field(
        default=5.0, description="How long an open circuit keeps a replica out before one trial request."
    )
    probe_interval: Annotated[float, Field(gt=0)] = Field(
        default=2.0, description="Seconds between active health probes of each replica."
    )
    scrape_interval: Annotated[float, Field(gt=0)] = Field(
        default=1.0, description="Seconds between scrapes of each engine's metrics."
    )

    def policy_for(self, model: str) -> str:
        return self.models.get(model, self.policy)


class Stack(_Strict):
    """A whole stack file."""

    version: Literal[1] = 1
    gateway: GatewayConfig = Field(default_factory=GatewayConfig)
    routing: Routing = Field(default_factory=Routing)
    cluster: ClusterConfig | None = None
    services: dict[str, Service] = Field(min_length=1)
    # Where each key was written (set by the loader; empty for a stack built in code).
    _source: SourceMap = PrivateAttr(default_factory=SourceMap)

    @field_validator("services")
    @classmethod
    def _valid_names(cls, services: dict[str, Service]) -> dict[str, Service]:
        for name in services:
            if not SERVICE_NAME.match(name):
                raise ValueError(
                    f"service name {name!r} must start with a letter or digit and hold only "
                    "letters, digits, '.', '_' and '-'"
                )
        return services

    @model_validator(mode="after")
    def _fixed_port_means_one_replica(self) -> Stack:
        for name, service in self.services.items():
            if service.port is not None and service.replicas > 1:
                raise ValueError(
                    f"service {name!r} has a fixed port and {service.replicas} replicas; "
                    "remove `port` so each replica gets its own"
                )
        return self

    @model_validator(mode="after")
    def _ports_distinct(self) -> Stack:
        taken: dict[int, str] = {self.gateway.port: "the gateway"}
        for name, service in self.services.items():
            if service.port is None:
                continue
            if service.port in taken:
                raise ValueError(f"port {service.port} of service {name!r} is already used by {taken[service.port]}")
            taken[service.port] = f"service {name!r}"
        return self

    @model_validator(mode="after")
    def _routed_names_served(self) -> Stack:
        served = {n for name in self.services for n in self.served_names(name)}
        unknown = sorted(set(self.routing.models) - served)
        if unknown:
            raise ValueError(
                f"routing.models names {', '.join(map(repr, unknown))}, which no service serves "
                f"(served names: {', '.join(sorted(served))})"
            )
        return self

    @model_validator(mode="after")
    def _model_names_resolve(self) -> Stack:
        served = {n for name in self.services for n in self.served_names(name)}
        for alias, target in self.gateway.aliases.items():
            if alias in served:
                raise ValueError(f"gateway.aliases: {alias!r} is already a served name; an alias must be new")
            if target not in served:
                raise ValueError(f"gateway.aliases: {alias!r} points to {target!r}, which no service serves")
        for model in self.gateway.limits.model_queues:
            if model not in served:
                raise ValueError(f"gateway.limits.model_queues: no service serves {model!r}")
        return self

    def locate(self, path: KeyPath) -> str:
        """Where the stack file sets `path`: `stack.yaml:7: services.chat.model` (what is known of it)."""
        return self._source.locate(path)

    def line(self, path: KeyPath) -> int | None:
        """The line of the stack file that sets `path` (or the deepest part of it that is set)."""
        return self._source.line(path)

    def written(self, path: KeyPath) -> str | None:
        """The value at `path` as the file writes it (`./x.gguf`, before `${VAR}` and path resolution)."""
        return self._source.written(path)

    def served_names(self, service_name: str) -> list[str]:
        """The names a service answers to: its `served_names`, or its own name."""
        return self.services[service_name].served_names or [service_name]
