"""The stack file: schema, loading, interpolation, model references."""

from servestack.stack.loader import default_stack_text, load_default_stack, load_stack, parse_stack
from servestack.stack.models import resolve_model
from servestack.stack.schema import GatewayConfig, NativeRuntime, Routing, RuntimeSpec, Service, Stack

__all__ = [
    "GatewayConfig",
    "NativeRuntime",
    "Routing",
    "RuntimeSpec",
    "Service",
    "Stack",
    "default_stack_text",
    "load_default_stack",
    "load_stack",
    "parse_stack",
    "resolve_model",
]
