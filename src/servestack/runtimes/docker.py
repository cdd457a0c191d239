"""The Docker runtime: `docker run --rm --gpus '"device=1"' -p P:P -v ... -e NAME --entrypoint X IMAGE ...`.

The engine binds 0.0.0.0 inside the container and the port is published on the service's host
interface. `--gpus` picks the devices, so the container sees them renumbered from 0 and gets no
`CUDA_VISIBLE_DEVICES`. Variables are passed by name (`-e HF_TOKEN`): docker reads their values from
its own environment, so tokens never appear in the argv. `--entrypoint` makes the engine command
independent of the image's ENTRYPOINT. `docker run` forwards SIGTERM to the container, and `--rm`
removes it after.
"""

from __future__ import annotations

import re
from dataclasses import replace

from servestack.engines.base import EngineCommand, EngineConfig
from servestack.runtimes.apptainer import CONTAINER_PYTHON
from servestack.runtimes.base import Launch
from servestack.runtimes.mounts import cache_env, cache_mounts, model_inside, model_mounts, parse_mount
from servestack.stack import DockerRuntime

WILDCARD_HOSTS = {"0.0.0.0", "::", ""}


def gpus_flag(gpus: tuple[int, ...]) -> list[str]:
    # The inner quotes are part of the value: docker splits `device=0,1` at the comma otherwise.
    return ["--gpus", '"device=' + ",".join(str(g) for g in gpus) + '"'] if gpus else []


def container_name(config: EngineConfig) -> str:
    base = re.sub(r"[^A-Za-z0-9_.-]+", "-", config.served_names[0] if config.served_names else "engine")
    return f"servestack-{base.strip('-.')}-{config.port}"


class DockerRuntimeWrapper:
    kind = "docker"

    def __init__(self, spec: DockerRuntime, *, driver_cuda: str | None = None) -> None:
        self.spec = spec
        self.mounts = [*cache_mounts(spec.model_cache), *(parse_mount(v) for v in spec.volumes)]

    def inside(self, config: EngineConfig) -> EngineConfig:
        return replace(config, host="0.0.0.0", model=model_inside(config.model, self.mounts))

    def wrap(self, command: EngineCommand, config: EngineConfig, env: dict[str, str]) -> Launch:
        mounts = [*self.mounts, *model_mounts(config.model, self.mounts)]
        inner = {**command.env, **cache_env(self.spec.model_cache), "PYTHONUNBUFFERED": "1", **env}
        publish = f"{config.port}:{config.port}"
        if config.host not in WILDCARD_HOSTS:
            publish = f"{config.host}:{publish}"
        argv = [
            "docker", "run", "--rm",
            "--name", container_name(config),
            *gpus_flag(config.gpus),
            "-p", publish,
            *([f"--ipc={self.spec.ipc}"] if self.spec.ipc else []),
            *(arg for mount in mounts for arg in ("-v", mount.spec())),
            *(arg for name in inner for arg in ("-e", name)),
            *self.spec.options,
            *_entrypoint(command, self.spec.image),
        ]  # fmt: skip
        return Launch(argv=argv, env=inner)

    def wrap_probe(self, command: EngineCommand, env: dict[str, str]) -> Launch:
        inner = {**command.env, **env}
        argv = [
            "docker", "run", "--rm",
            *(arg for mount in self.mounts for arg in ("-v", mount.spec())),
            *(arg for name in inner for arg in ("-e", name)),
            *_entrypoint(command, self.spec.image),
        ]  # fmt: skip
        return Launch(argv=argv, env=inner)


def _entrypoint(command: EngineCommand, image: str) -> list[str]:
    if command.kind == "module":
        return ["--entrypoint", CONTAINER_PYTHON, image, "-m", command.entry, *command.args]
    if command.kind == "script":
        return ["--entrypoint", CONTAINER_PYTHON, image, "-c", command.entry, *command.args]
    return ["--entrypoint", command.entry, image, *command.args]
