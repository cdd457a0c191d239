"""Wheels for a service's venv runtime, so a bundle can rebuild the venv where there is no package index.

Online, `pip freeze` lists what the venv holds and `pip download --no-deps` fetches those exact versions
as wheels (pip reads its own configuration: an index, a mirror, `PIP_FIND_LINKS`). Offline, `bundle load`
creates the venv with the same Python version and installs the wheels with `--no-index`.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from servestack.errors import DownloadError

PIP_TIMEOUT = 3600.0


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def freeze(venv: Path) -> tuple[str, str]:
    """(MAJOR.MINOR of the venv's Python, its `pip freeze`) — editable installs left out."""
    python = venv_python(venv)
    if not python.is_file():
        raise DownloadError(f"{venv} is not a venv (no bin/python)", fix="create it, or correct `runtime.venv`")
    version = _run([str(python), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], "read its Python version")
    requirements = _run([str(python), "-m", "pip", "freeze", "--exclude-editable"], "list its packages")
    return version.strip(), requirements


def download_wheels(venv: Path, requirements: Path, into: Path) -> list[Path]:
    """The wheels of `requirements`, fetched by the venv's own pip into `into`."""
    into.mkdir(parents=True, exist_ok=True)
    command = [str(venv_python(venv)), "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    _run([*command, "-r", str(requirements), "-d", str(into)], f"download the wheels of {venv}")
    return sorted(into.glob("*.whl"))


def build_venv(python_version: str, venv: Path, wheels: Path, requirements: Path) -> None:
    """Create `venv` with Python MAJOR.MINOR and install `requirements` from `wheels` only (no index)."""
    python = _interpreter(python_version)
    _run([python, "-m", "venv", str(venv)], f"create the venv {venv}")
    pip = [str(venv_python(venv)), "-m", "pip", "install", "--no-index", "--find-links", str(wheels)]
    _run([*pip, "-r", str(requirements)], f"install the bundled wheels into {venv}")


def _interpreter(version: str) -> str:
    if f"{sys.version_info.major}.{sys.version_info.minor}" == version:
        return sys.executable
    found = shutil.which(f"python{version}")
    if found is None:
        raise DownloadError(
            f"the bundled venv needs Python {version}, which is not installed here",
            fix=f"install python{version} (the wheels were built for it), then load the bundle again",
        )
    return found


def _run(argv: list[str], what: str) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=PIP_TIMEOUT, check=False)
    except OSError as exc:
        raise DownloadError(f"could not {what}: {exc.strerror or exc}") from None
    if done.returncode != 0:
        tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
        raise DownloadError(f"could not {what}: {tail}", fix="run the command yourself to see the whole error")
    return done.stdout
