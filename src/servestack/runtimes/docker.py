"""The Docker runtime: `docker run --rm --init --name N --gpus ... -p P:P -v ... -e NAME --entrypoint X IMAGE ...`.

With `network: host` the engine binds the service's host and port itself; otherwise it binds 0.0.0.0
inside the container and the port is published on the service's host interface. `--gpus` picks the
devices, so the container sees them renumbered from 0 and gets no `CUDA_VISIBLE_DEVICES`. Variables
are passed by name (`-e HF_TOKEN`): docker reads their values from its own environment, so tokens
never appear in the argv. `--entrypoint` makes the engine command independent of the image's
ENTRYPOINT. `--init` puts a small init as the container's first process: it passes SIGTERM on to the
engine (a first process gets no default signal handling) and reaps its workers. The container is
named (`container.py`) and stopped by that name; `--rm` removes it once it ends.
"""

from __future__ import annotations

from dataclasses import replace

from servestack.engines.base import EngineCommand, EngineConfig
from servestack.runtimes.apptainer import CONTAINER_PYTHON
from servestack.runtimes.base import Launch
from servestack.runtimes.container import Container
from servestack.runtimes.mounts import cache_env, cache_mounts, model_inside, model_mounts, parse_mount
from servestack.stack import ContainerRuntime

WILDCARD_HOSTS = {"0.0.0.0", "::", ""}
HOST_NETWORK = "host"


class DockerRuntimeWrapper:
    kind = "docker"
    cli = "docker"

    def __init__(self, spec: ContainerRuntime, *, driver_cuda: str | None = None) -> None:
        self.spec = spec
        self.mounts = [*cache_mounts(spec.model_cache), *(parse_mount(v) for v in spec.volumes)]

    @staticmethod
    def gpu_flags(gpus: tuple[int, ...]) -> list[str]:
        # The inner quotes are part of the value: docker splits `device=0,1` at the comma otherwise.
        return ["--gpus", '"device=' + ",".join(str(g) for g in gpus) + '"'] if gpus else []

    def inside(self, config: EngineConfig) -> EngineConfig:
        host = config.host if self.spec.network == HOST_NETWORK else "0.0.0.0"
        return replace(config, host=host, model=model_inside(config.model, self.mounts))

    def wrap(
        self,
        command: EngineCommand,
        config: EngineConfig,
        env: dict[str, str],
        *,
        name: str = "",
        forward: tuple[str, ...] = (),
    ) -> Launch:
        mounts = [*self.mounts, *model_mounts(config.model, self.mounts)]
        inner = {**command.env, **cache_env(self.spec.model_cache), "PYTHONUNBUFFERED": "1", **env}
        argv = [
            self.cli, "run", "--rm", "--init",
            *(["--name", name] if name else []),
            *self.gpu_flags(config.gpus),
            *self._network(config),
            *([f"--ipc={self.spec.ipc}"] if self.spec.ipc else []),
            *(arg for mount in mounts for arg in ("-v", mount.spec())),
            *(arg for variable in [*inner, *forward] for arg in ("-e", variable)),
            *self.spec.options,
            *_entrypoint(command, self.spec.image),
        ]  # fmt: skip
        return Launch(argv=argv, env=inner, container=Container(self.cli, name) if name else None)

    def wrap_probe(self, command: EngineCommand, env: dict[str, str], *, forward: tuple[str, ...] = ()) -> Launch:
        inner = {**command.env, **env}
        argv = [
            self.cli, "run", "--rm", "--init",
            *(["--network", self.spec.network] if self.spec.network else []),
            *(arg for mount in self.mounts for arg in ("-v", mount.spec())),
            *(arg for variable in [*inner, *forward] for arg in ("-e", variable)),
            *_entrypoint(command, self.spec.image),
        ]  # fmt: skip
        return Launch(argv=argv, env=inner)

    def _network(self, config: EngineConfig) -> list[str]:
        if self.spec.network == HOST_NETWORK:
            return ["--network", HOST_NETWORK]
        publish = f"{config.port}:{config.port}"
        if config.host not in WILDCARD_HOSTS:
            publish = f"{config.host}:{publish}"
        return [*(["--network", self.spec.network] if self.spec.network else []), "-p", publish]


def _entrypoint(command: EngineCommand, image: str) -> list[str]:
    if command.kind == "module":
        return ["--entrypoint", CONTAINER_PYTHON, image, "-m", command.entry, *command.args]
    if command.kind == "script":
        return ["--entrypoint", CONTAINER_PYTHON, image, "-c", command.entry, *command.args]
    return ["--entrypoint", command.entry, image, *command.args]
