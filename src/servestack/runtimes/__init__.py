"""Runtimes: wrap an engine command for where it runs (native, Apptainer, Docker, podman)."""

from collections.abc import Callable

from servestack.runtimes.apptainer import ApptainerRuntimeWrapper
from servestack.runtimes.base import Launch, Runtime, is_secret, masked_argv
from servestack.runtimes.container import Container, container_name
from servestack.runtimes.cuda import choose_environment
from servestack.runtimes.docker import DockerRuntimeWrapper
from servestack.runtimes.hub import TOKEN_NAMES, hub_token_env
from servestack.runtimes.native import NativeRuntimeWrapper, needs_driver_cuda
from servestack.runtimes.podman import PodmanRuntimeWrapper
from servestack.stack import RuntimeSpec

# kind → wrapper class; each takes (spec, *, driver_cuda) and satisfies `Runtime`.
RUNTIMES: dict[str, Callable[..., Runtime]] = {
    "native": NativeRuntimeWrapper,
    "apptainer": ApptainerRuntimeWrapper,
    "docker": DockerRuntimeWrapper,
    "podman": PodmanRuntimeWrapper,
}


def get_runtime(spec: RuntimeSpec, *, driver_cuda: str | None = None) -> Runtime:
    """The runtime wrapper for a service's `runtime:` section.

    `driver_cuda` (the NVIDIA driver's CUDA version) chooses among CUDA environments when a
    service declares several; RuntimeUnavailable explains when none fits.
    """
    return RUNTIMES[spec.kind](spec, driver_cuda=driver_cuda)


__all__ = [
    "RUNTIMES",
    "TOKEN_NAMES",
    "ApptainerRuntimeWrapper",
    "Container",
    "DockerRuntimeWrapper",
    "Launch",
    "NativeRuntimeWrapper",
    "PodmanRuntimeWrapper",
    "Runtime",
    "choose_environment",
    "container_name",
    "get_runtime",
    "hub_token_env",
    "is_secret",
    "masked_argv",
    "needs_driver_cuda",
]
