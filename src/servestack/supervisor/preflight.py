"""Checks before an engine starts, by running its own `--version` and `--help` where it will run.

The one place that runs those commands. A flag value the installed version does not list (SGLang
older than GLM-4.7's `--tool-call-parser glm47`) is refused here with the engine's upgrade hint,
instead of minutes later in the engine's log.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Mapping, Sequence

from servestack.engines import get_engine, rejected_values
from servestack.engines.helptext import flag_values
from servestack.errors import EngineError, RuntimeUnavailable
from servestack.runtimes import Launch
from servestack.stack import Service
from servestack.supervisor.launch import NO_ENVIRON, build_probe_launch
from servestack.supervisor.process import NO_MARK

PROBE_TIMEOUT = 180.0  # SGLang and vLLM import torch before they print their help
OUTPUT_TAIL_LINES = 10


async def run_probe(
    launch: Launch, timeout: float = PROBE_TIMEOUT, *, mark: Mapping[str, str] = NO_MARK
) -> tuple[int | None, str]:
    """Run a short command; (exit code, stdout+stderr). Exit code None when it timed out."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *launch.argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, **launch.env, **mark},
            start_new_session=True,
        )
    except (FileNotFoundError, PermissionError):
        raise RuntimeUnavailable(f"cannot run {launch.argv[0]!r}: not found or not executable") from None
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        return None, ""
    return proc.returncode, out.decode(errors="replace")


async def detect_version(
    service: Service,
    *,
    environ: Mapping[str, str] = NO_ENVIRON,
    driver_cuda: str | None = None,
    mark: Mapping[str, str] = NO_MARK,
) -> str | None:
    """The installed engine's version as it reports it, or None if it cannot tell."""
    engine = get_engine(service.engine)
    launch = build_probe_launch(service, engine.version_command(service), environ=environ, driver_cuda=driver_cuda)
    code, output = await run_probe(launch, mark=mark)
    return engine.parse_version(output) if code == 0 else None


async def check_flags(
    service: Service,
    argv: Sequence[str],
    *,
    environ: Mapping[str, str] = NO_ENVIRON,
    driver_cuda: str | None = None,
    mark: Mapping[str, str] = NO_MARK,
) -> None:
    """Raise EngineError when the installed engine does not accept a checked flag value in `argv`.

    `mark` joins the probes' environment (see `lineage.py`), so they die with their controller too.
    """
    engine = get_engine(service.engine)
    if not flag_values(argv, engine.checked_flags):
        return
    launch = build_probe_launch(service, engine.help_command(service), environ=environ, driver_cuda=driver_cuda)
    code, output = await run_probe(launch, mark=mark)
    if code != 0:
        raise EngineError(
            f"{engine.display_name} did not run here: `{launch.display()}` "
            + ("timed out" if code is None else f"exited with code {code}"),
            fix=engine.install_hint,
            log_tail=output.splitlines()[-OUTPUT_TAIL_LINES:],
        )
    rejections = rejected_values(argv, output, engine.checked_flags)
    if not rejections:
        return
    version = await detect_version(service, environ=environ, driver_cuda=driver_cuda, mark=mark)
    installed = f"{engine.display_name} {version}" if version else f"the installed {engine.display_name}"
    problems = "; ".join(f"{r.flag} {r.value!r} (it accepts: {', '.join(r.accepted)})" for r in rejections)
    raise EngineError(f"{installed} does not accept {problems}", fix=engine.install_hint)
