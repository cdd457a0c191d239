"""From a service and what the plan decided to the exact process to start. Pure: no I/O.

`build_launch` is what `up` starts and what `servestack plan --show-commands` prints: the engine
builds its command for the config as seen inside the runtime (container paths, the interface to
bind), the runtime wraps it. The environment the engine gets is the service's `env` plus the
Hugging Face token (from `environ`: the process environment and the stack's `.env`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from types import MappingProxyType

from servestack.engines import EngineCommand, EngineConfig, get_engine
from servestack.engines.sleep import SleepMode
from servestack.runtimes import Launch, get_runtime, hub_token_env
from servestack.stack import Service
from servestack.supervisor.lineage import MARK_VARIABLE

NO_ENVIRON: Mapping[str, str] = MappingProxyType({})
# Every process the supervisor starts carries its mark (lineage.py); into a container it is passed by
# name, so the watchdog and `down` find the engine there too.
MARKED = (MARK_VARIABLE,)


def engine_env(service: Service, environ: Mapping[str, str] = NO_ENVIRON) -> dict[str, str]:
    """What the engine process must see beyond its inherited environment: the token, then `env`."""
    return {**hub_token_env(service.env, environ), **service.env}


def build_launch(
    service: Service,
    config: EngineConfig,
    *,
    environ: Mapping[str, str] = NO_ENVIRON,
    driver_cuda: str | None = None,
    name: str = "",
) -> Launch:
    """The launch of one engine replica.

    `driver_cuda` is the NVIDIA driver's CUDA version, needed only when the runtime chooses among
    CUDA environments (RuntimeUnavailable explains when none fits). `name` names the replica on
    this machine (`container_name`): a container is given it.
    """
    engine = get_engine(service.engine)
    runtime = get_runtime(service.runtime, driver_cuda=driver_cuda)
    command = with_sleep_mode(engine.sleep, service, engine.command(service, runtime.inside(config)))
    return runtime.wrap(command, config, engine_env(service, environ), name=name, forward=MARKED)


def build_probe_launch(
    service: Service,
    command: EngineCommand,
    *,
    environ: Mapping[str, str] = NO_ENVIRON,
    driver_cuda: str | None = None,
) -> Launch:
    """A short tool run (`--version`, `--help`) of the service's engine, where the engine runs."""
    runtime = get_runtime(service.runtime, driver_cuda=driver_cuda)
    return runtime.wrap_probe(command, engine_env(service, environ), forward=MARKED)


def with_sleep_mode(mode: SleepMode | None, service: Service, command: EngineCommand) -> EngineCommand:
    """`command` with the engine's sleep flags and environment when the service unloads by sleeping."""
    if mode is None or not service.on_demand or service.unload != "sleep":
        return command
    return replace(command, args=[*command.args, *mode.flags], env={**command.env, **mode.env})
