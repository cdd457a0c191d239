"""Runtimes: wrap an engine command for where it runs."""

from servestack.runtimes.base import Launch, Runtime
from servestack.runtimes.native import NativeRuntimeWrapper
from servestack.stack import RuntimeSpec


def get_runtime(spec: RuntimeSpec) -> Runtime:
    """The runtime wrapper for a service's `runtime:` section."""
    return NativeRuntimeWrapper(spec)


__all__ = ["Launch", "NativeRuntimeWrapper", "Runtime", "get_runtime"]
