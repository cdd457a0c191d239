"""The native runtime: the engine runs as a process on this machine.

From the interpreter running servestack, a given `python` or `venv`, a conda environment
(`conda run -n ENV --no-capture-output`, so its log streams), a pixi environment
(`pixi run --manifest-path M --environment E`, E chosen by CUDA version when several are given), or
an engine binary on PATH. The plan's GPUs become `CUDA_VISIBLE_DEVICES`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from servestack.engines.base import EngineCommand, EngineConfig
from servestack.runtimes.base import Launch
from servestack.runtimes.cuda import choose_environment
from servestack.stack import NativeRuntime, PixiEnvironment


def pixi_environment(pixi: PixiEnvironment, driver_cuda: str | None) -> str | None:
    """The pixi environment to run: the one named, the CUDA choice among several, or pixi's default."""
    if pixi.environments:
        return choose_environment(driver_cuda, pixi.environments)
    return pixi.environment


def needs_driver_cuda(spec: object) -> bool:
    """Whether launching with `spec` needs the driver's CUDA version (to choose an environment)."""
    return isinstance(spec, NativeRuntime) and spec.pixi is not None and bool(spec.pixi.environments)


class NativeRuntimeWrapper:
    kind = "native"

    def __init__(self, spec: NativeRuntime, *, driver_cuda: str | None = None) -> None:
        self.spec = spec
        self.environment = pixi_environment(spec.pixi, driver_cuda) if spec.pixi else None

    def inside(self, config: EngineConfig) -> EngineConfig:
        return config

    def wrap(
        self,
        command: EngineCommand,
        config: EngineConfig,
        env: dict[str, str],
        *,
        name: str = "",
        forward: tuple[str, ...] = (),
    ) -> Launch:
        return Launch(argv=self._argv(command), env={**command.env, **_visible_devices(config), **env})

    def wrap_probe(self, command: EngineCommand, env: dict[str, str], *, forward: tuple[str, ...] = ()) -> Launch:
        return Launch(argv=self._argv(command), env={**command.env, **env})

    def _argv(self, command: EngineCommand) -> list[str]:
        if command.kind == "module":
            return [*self._prefix(), self._python(), "-m", command.entry, *command.args]
        if command.kind == "script":
            return [*self._prefix(), self._python(), "-c", command.entry, *command.args]
        return [*self._prefix(), self._binary(command.entry), *command.args]

    def _prefix(self) -> list[str]:
        if self.spec.conda:
            return ["conda", "run", "-n", self.spec.conda, "--no-capture-output"]
        if self.spec.pixi:
            environment = ["--environment", self.environment] if self.environment else []
            return ["pixi", "run", "--manifest-path", self.spec.pixi.manifest, *environment]
        return []

    def _python(self) -> str:
        if self.spec.python:
            return self.spec.python
        if self.spec.venv:
            return str(Path(self.spec.venv).expanduser() / "bin" / "python")
        if self.spec.conda or self.spec.pixi:
            return "python"  # the environment's own, found on its PATH
        return sys.executable

    def _binary(self, entry: str) -> str:
        if self.spec.binary:
            return self.spec.binary
        if self.spec.venv:
            return str(Path(self.spec.venv).expanduser() / "bin" / entry)
        return entry


def _visible_devices(config: EngineConfig) -> dict[str, str]:
    # Without GPUs in the plan the engine must not grab any: an empty list hides them all.
    return {"CUDA_VISIBLE_DEVICES": ",".join(str(g) for g in config.gpus)}
