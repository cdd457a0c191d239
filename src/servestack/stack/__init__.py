"""The stack file: schema, loading, interpolation, model references."""

from servestack.stack.loader import default_stack_text, load_default_stack, load_stack, parse_stack, read_dotenv
from servestack.stack.models import resolve_model
from servestack.stack.schema import (
    ApptainerRuntime,
    CudaVersion,
    DockerRuntime,
    GatewayConfig,
    NativeRuntime,
    PixiEnvironment,
    RestartPolicy,
    RuntimeSpec,
    Service,
    Stack,
)

__all__ = [
    "ApptainerRuntime",
    "CudaVersion",
    "DockerRuntime",
    "GatewayConfig",
    "NativeRuntime",
    "PixiEnvironment",
    "RestartPolicy",
    "RuntimeSpec",
    "Service",
    "Stack",
    "default_stack_text",
    "load_default_stack",
    "load_stack",
    "parse_stack",
    "read_dotenv",
    "resolve_model",
]
