"""What this machine says about a stack, for the planner (which does no I/O itself): are the local
paths it names there, can its ports be bound, are the programs its services start installed, and what
its engines allocated when they last started here (the calibration records in the state dir).

`plan` and `up` both run it, so they refuse the same things, before any process starts.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Mapping
from enum import Enum
from pathlib import Path
from urllib.parse import urlsplit

from servestack.cli.app import settings
from servestack.downloads.resolve import engine_model
from servestack.engines import EngineConfig, get_engine
from servestack.errors import RuntimeUnavailable, ServestackError, StackError
from servestack.gpus.nvidia_smi import read_driver_cuda
from servestack.plan import HostFacts, Unresolved
from servestack.plan.calibration import CalibrationRecord
from servestack.plan.ports import listeners
from servestack.runtimes import needs_driver_cuda
from servestack.sockets import bound_tcp_socket
from servestack.stack import NativeRuntime, Service, Stack, is_reference, local_paths
from servestack.supervisor import StateStore, pid_alive
from servestack.supervisor.launch import build_launch


class Survey(Enum):
    PLAN = "plan"  # this machine: paths, every port, programs
    UP = "up"  # the same but the gateway's port, which `up` binds itself, first of all
    ELSEWHERE = "elsewhere"  # planning for another machine (`plan --gpus`): the stack's paths only


def resolve_models(stack: Stack) -> tuple[dict[str, str], dict[str, Unresolved]]:
    """Each service's model as engines are given it (package and ModelScope references and pulled GGUF models
    become paths, short names repositories: downloads/resolve.py), and the references that name nothing here
    (those services keep the reference)."""
    models, unresolved = {}, {}
    models_dir = settings().models_path
    for name, service in stack.services.items():
        formats = get_engine(service.engine).weight_formats
        try:
            models[name] = engine_model(service.model, formats=formats, environ=os.environ, models_dir=models_dir)
        except StackError as error:
            models[name] = service.model
            unresolved[service.model] = Unresolved(error.message, error.fix or "")
    return models, unresolved


def survey_host(stack: Stack, unresolved: Mapping[str, Unresolved], survey: Survey) -> HostFacts:
    missing = frozenset(
        local.path
        for local in local_paths(stack)
        if not is_reference(local.path) and not Path(local.path).expanduser().exists()
    )
    if survey is Survey.ELSEWHERE:
        return HostFacts(missing, dict(unresolved))
    calibration = _calibration(stack)
    return HostFacts(
        missing,
        dict(unresolved),
        _unbindable(stack, survey),
        _unlaunchable(stack),
        engine_versions=_engine_versions(stack, calibration),
        calibration=calibration,
        memory_bytes=_host_memory(),
    )


def _host_memory() -> int | None:
    """This machine's memory (where sleeping engines keep their weights); None when the system does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _calibration(stack: Stack) -> dict[str, list[CalibrationRecord]]:
    """What each service's engine allocated at its starts here, oldest first (`plan/calibration.py`)."""
    store = StateStore(settings().state_dir)
    return {name: records for name in stack.services if (records := store.read_calibration(name))}


def _engine_versions(stack: Stack, calibration: Mapping[str, list[CalibrationRecord]]) -> dict[str, str]:
    """The version each service's engine logged at its latest start here: memory rules follow it."""
    found = {}
    for name, records in calibration.items():
        engine = stack.services[name].engine
        latest = max((r for r in records if r.setup.engine == engine), key=lambda r: r.time, default=None)
        if latest is not None and latest.engine_version:
            found[name] = latest.engine_version
    return found


def _unbindable(stack: Stack, survey: Survey) -> dict[tuple[str, int], tuple[str, str]]:
    """Listeners that cannot be bound now; ports held by this state dir's running servestack are its own."""
    ours = _running_ports()
    found = {}
    for listener in listeners(stack):
        if listener.port in ours or (survey is Survey.UP and listener.service is None):
            continue
        if stack.cluster is not None and listener.service is not None:
            continue  # an engine binds its port on its cluster node
        try:
            bound_tcp_socket(listener.host, listener.port).close()
        except OSError as error:
            found[listener.address] = (errno.errorcode.get(error.errno or 0, ""), error.strerror or str(error))
    return found


def _running_ports() -> set[int]:
    """The ports the servestack running on this state dir holds: its gateway and its engines."""
    store = StateStore(settings().state_dir)
    instance = store.read_instance()
    if instance is None or not pid_alive(instance.pid):
        return set()
    gateway = urlsplit(instance.gateway_url).port
    return {r.port for r in store.read_replicas() if r.port is not None} | ({gateway} if gateway else set())


def _unlaunchable(stack: Stack) -> dict[str, Unresolved]:
    """Services whose process cannot be started here: the program is not installed, or no environment
    fits the driver's CUDA. A path that is missing, or a setting the engine refuses, is reported apart."""
    found = {}
    for name, service in stack.services.items():
        config = EngineConfig(model=service.model, served_names=(name,), host=service.host, port=service.port or 1)
        driver = read_driver_cuda() if needs_driver_cuda(service.runtime) else None
        try:
            program = build_launch(service, config, driver_cuda=driver).argv[0]
        except RuntimeUnavailable as error:
            found[name] = Unresolved(error.message, error.fix or "")
            continue
        except ServestackError:
            continue
        if "/" not in program and shutil.which(program) is None:
            found[name] = Unresolved(
                f"{program!r} is not installed here (not on PATH)", _install_hint(service, program)
            )
    return found


def _install_hint(service: Service, program: str) -> str:
    runtime = service.runtime
    engine_itself = isinstance(runtime, NativeRuntime) and not (runtime.conda or runtime.pixi)
    return get_engine(service.engine).install_hint if engine_itself else f"install {program}"
