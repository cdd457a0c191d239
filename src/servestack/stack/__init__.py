"""The stack file: schema, loading, interpolation, model references."""

from servestack.stack.gateway_schema import (
    AuthConfig,
    LimitsConfig,
    LogsConfig,
    MetricsConfig,
    QueueConfig,
    TimeoutsConfig,
    TracingConfig,
    UsageConfig,
)
from servestack.stack.loader import default_stack_text, load_default_stack, load_stack, parse_stack
from servestack.stack.models import resolve_model
from servestack.stack.schema import GatewayConfig, NativeRuntime, RuntimeSpec, Service, Stack

__all__ = [
    "AuthConfig",
    "GatewayConfig",
    "LimitsConfig",
    "LogsConfig",
    "MetricsConfig",
    "NativeRuntime",
    "QueueConfig",
    "RuntimeSpec",
    "Service",
    "Stack",
    "TimeoutsConfig",
    "TracingConfig",
    "UsageConfig",
    "default_stack_text",
    "load_default_stack",
    "load_stack",
    "parse_stack",
    "resolve_model",
]
