"""The stack file schema (version 1): what a user writes, as frozen pydantic models.

Every model forbids unknown keys so that a typo (`contxt_length`) is an error naming the key.
Values derived from the stack (ports chosen, GPUs placed, flags computed) belong to the Plan;
a Stack is never mutated after loading.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from servestack.stack.gateway_schema import (
    AuthConfig,
    LimitsConfig,
    LogsConfig,
    MetricsConfig,
    TimeoutsConfig,
    TracingConfig,
    UsageConfig,
)

SERVICE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

EngineName = Literal["llamacpp", "vllm", "sglang", "mistralrs", "sim"]
Port = Annotated[int, Field(ge=1, le=65535)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NativeRuntime(_Strict):
    """Run the engine as a process on this machine.

    `python` names the interpreter whose environment holds the engine (e.g. `/opt/vllm/bin/python`);
    `venv` is a shorthand for `<venv>/bin/python`. Neither given: the engine's own default
    (the interpreter running servestack, or the engine binary on PATH).
    """

    kind: Literal["native"] = "native"
    python: str | None = None
    venv: str | None = None
    binary: str | None = None

    @model_validator(mode="after")
    def _one_interpreter(self) -> NativeRuntime:
        if self.python and self.venv:
            raise ValueError("give either 'python' or 'venv', not both")
        return self


RuntimeSpec = NativeRuntime


class Service(_Strict):
    """One entry of `services:`: an engine serving one model."""

    engine: EngineName
    model: str = Field(min_length=1, description="A local path, a HF id, or package:PKG/FILE.")
    served_names: list[str] = Field(
        default_factory=list, description="Names clients use in `model`; defaults to the service name."
    )
    host: str = Field(default="127.0.0.1", description="Interface the engine binds to.")
    port: Port | None = Field(default=None, description="Engine port; omitted → a free port is chosen.")
    gpus: list[Annotated[int, Field(ge=0)]] | None = None
    tp: Annotated[int, Field(ge=1)] | None = None
    context_length: Annotated[int, Field(gt=0)] | None = None
    memory_fraction: Annotated[float, Field(gt=0, le=1)] | None = None
    args: list[str] = Field(default_factory=list, description="Extra engine flags, passed through as given.")
    env: dict[str, str] = Field(default_factory=dict)
    runtime: RuntimeSpec = Field(default_factory=NativeRuntime)

    @field_validator("served_names")
    @classmethod
    def _names_not_blank(cls, names: list[str]) -> list[str]:
        if any(not n.strip() for n in names):
            raise ValueError("served names must not be empty")
        if len(set(names)) != len(names):
            raise ValueError("served names must be unique")
        return names

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


class Stack(_Strict):
    """A whole stack file."""

    version: Literal[1] = 1
    gateway: GatewayConfig = Field(default_factory=GatewayConfig)
    services: dict[str, Service] = Field(min_length=1)

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

    def served_names(self, service_name: str) -> list[str]:
        """The names a service answers to: its `served_names`, or its own name."""
        return self.services[service_name].served_names or [service_name]
