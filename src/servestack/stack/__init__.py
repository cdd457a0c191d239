"""The stack file: schema, loading, interpolation, model references."""

from servestack.stack.gateway_schema import (
    AuthConfig,
    ConsoleConfig,
    LimitsConfig,
    LogsConfig,
    MetricsConfig,
    QueueConfig,
    TimeoutsConfig,
    TracingConfig,
    UsageConfig,
)
from servestack.stack.loader import default_stack_text, load_default_stack, load_stack, parse_stack, read_dotenv
from servestack.stack.models import resolve_model
from servestack.stack.ondemand_schema import FOREVER, format_duration, parse_duration
from servestack.stack.paths import LocalPath, is_reference, local_paths
from servestack.stack.request_defaults import RequestDefaults
from servestack.stack.runtime_schema import (
    ApptainerRuntime,
    ContainerRuntime,
    CudaVersion,
    DockerRuntime,
    NativeRuntime,
    PixiEnvironment,
    PodmanRuntime,
    RuntimeSpec,
)
from servestack.stack.schema import ClusterConfig, GatewayConfig, RestartPolicy, Routing, Service, Stack
from servestack.stack.source import KeyPath, SourceMap

__all__ = [
    "FOREVER",
    "ApptainerRuntime",
    "AuthConfig",
    "ClusterConfig",
    "ConsoleConfig",
    "ContainerRuntime",
    "CudaVersion",
    "DockerRuntime",
    "GatewayConfig",
    "KeyPath",
    "LimitsConfig",
    "LocalPath",
    "LogsConfig",
    "MetricsConfig",
    "NativeRuntime",
    "PixiEnvironment",
    "PodmanRuntime",
    "QueueConfig",
    "RequestDefaults",
    "RestartPolicy",
    "Routing",
    "RuntimeSpec",
    "Service",
    "SourceMap",
    "Stack",
    "TimeoutsConfig",
    "TracingConfig",
    "UsageConfig",
    "default_stack_text",
    "format_duration",
    "is_reference",
    "load_default_stack",
    "load_stack",
    "local_paths",
    "parse_duration",
    "parse_stack",
    "read_dotenv",
    "resolve_model",
]
