"""The Apptainer runtime: `apptainer exec --nv --bind ... IMAGE python3 -m ...`.

`exec` rather than `run`: the engine command is given in full, so an image's runscript (a Docker
ENTRYPOINT such as vLLM's `vllm serve`) is not prepended to it. Containers share the host network,
so the engine binds its port directly. Variables are passed as `APPTAINERENV_NAME`, which wins over
values the image sets itself (a plain host variable does not) and keeps them out of the argv.
"""

from __future__ import annotations

from dataclasses import replace

from servestack.engines.base import EngineCommand, EngineConfig
from servestack.runtimes.base import Launch
from servestack.runtimes.mounts import Mount, cache_env, cache_mounts, model_inside, model_mounts, parse_mount
from servestack.stack import ApptainerRuntime

CONTAINER_PYTHON = "python3"


class ApptainerRuntimeWrapper:
    kind = "apptainer"

    def __init__(self, spec: ApptainerRuntime, *, driver_cuda: str | None = None) -> None:
        self.spec = spec
        self.mounts = [*cache_mounts(spec.model_cache), *(parse_mount(b) for b in spec.binds)]

    @property
    def image(self) -> str:
        """What `apptainer exec` runs: the pulled SIF when there is one, else `image` itself."""
        return self.spec.sif or self.spec.image

    def inside(self, config: EngineConfig) -> EngineConfig:
        return replace(config, model=model_inside(config.model, self.mounts))

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
        visible = {"CUDA_VISIBLE_DEVICES": ",".join(str(g) for g in config.gpus)}
        inner = {**command.env, **visible, **cache_env(self.spec.model_cache), "PYTHONUNBUFFERED": "1", **env}
        return self._launch(command, mounts, inner)

    def wrap_probe(self, command: EngineCommand, env: dict[str, str], *, forward: tuple[str, ...] = ()) -> Launch:
        return self._launch(command, self.mounts, {**command.env, **env})

    def _launch(self, command: EngineCommand, mounts: list[Mount], env: dict[str, str]) -> Launch:
        argv = [
            "apptainer", "exec",
            *(["--nv"] if self.spec.nv else []),
            *(arg for mount in mounts for arg in ("--bind", mount.spec())),
            *self.spec.options,
            self.image,
            *_inner_argv(command),
        ]  # fmt: skip
        return Launch(argv=argv, env={f"APPTAINERENV_{k}": v for k, v in env.items()})


def _inner_argv(command: EngineCommand) -> list[str]:
    if command.kind == "module":
        return [CONTAINER_PYTHON, "-m", command.entry, *command.args]
    if command.kind == "script":
        return [CONTAINER_PYTHON, "-c", command.entry, *command.args]
    return [command.entry, *command.args]
