"""The native runtime: the engine runs as a process on this machine, from a venv or PATH."""

from __future__ import annotations

import sys
from pathlib import Path

from servestack.engines.base import EngineCommand, EngineConfig
from servestack.runtimes.base import Launch
from servestack.stack import NativeRuntime


class NativeRuntimeWrapper:
    kind = "native"

    def __init__(self, spec: NativeRuntime) -> None:
        self.spec = spec

    def wrap(self, command: EngineCommand, config: EngineConfig, env: dict[str, str]) -> Launch:
        if command.kind == "module":
            argv = [self._python(), "-m", command.entry, *command.args]
        else:
            argv = [self.spec.binary or command.entry, *command.args]
        return Launch(argv=argv, env={**command.env, **_visible_devices(config), **env})

    def _python(self) -> str:
        if self.spec.python:
            return self.spec.python
        if self.spec.venv:
            return str(Path(self.spec.venv).expanduser() / "bin" / "python")
        return sys.executable


def _visible_devices(config: EngineConfig) -> dict[str, str]:
    # Without GPUs in the plan the engine must not grab any: an empty list hides them all.
    return {"CUDA_VISIBLE_DEVICES": ",".join(str(g) for g in config.gpus)}
