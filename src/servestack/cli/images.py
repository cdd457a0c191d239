"""`pull-image`: fetch the container images services run in (`apptainer pull` / `docker pull` / `podman pull`)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from servestack.cli.app import StackOption, app, choose_stack, console
from servestack.errors import DownloadError, RuntimeUnavailable, StackError

if TYPE_CHECKING:
    from servestack.stack import Service, Stack


@dataclass(frozen=True)
class ImagePull:
    """What pulling one service's image means: a command to run, or why there is none."""

    service: str
    argv: list[str] | None
    reason: str = ""
    target: str | None = None  # a file the pull writes (a SIF)


def image_pull(name: str, service: Service, *, force: bool = False) -> ImagePull:
    from servestack.stack import ApptainerRuntime, DockerRuntime, PodmanRuntime

    runtime = service.runtime
    if isinstance(runtime, DockerRuntime | PodmanRuntime):
        return ImagePull(name, [runtime.kind, "pull", runtime.image])  # the kind is the CLI's name
    if not isinstance(runtime, ApptainerRuntime):
        return ImagePull(name, None, "runs natively, no image")
    if runtime.sif:
        return ImagePull(name, ["apptainer", "pull", *(["--force"] if force else []), runtime.sif, runtime.image],
                         target=runtime.sif)  # fmt: skip
    if "://" in runtime.image:
        return ImagePull(name, None, f"runs {runtime.image} directly (apptainer caches it); set `sif:` to keep a file")
    return ImagePull(name, None, f"runs the local file {runtime.image}")


def image_pulls(stack: Stack, only: str | None = None, *, force: bool = False) -> list[ImagePull]:
    if only is not None and only not in stack.services:
        raise StackError(f"no service {only!r} in the stack", fix=f"services: {', '.join(stack.services)}")
    names = [only] if only else list(stack.services)
    return [image_pull(name, stack.services[name], force=force) for name in names]


@app.command("pull-image")
def pull_image(
    service: str | None = typer.Argument(None, help="Only this service (default: every service)."),
    file: Path | None = StackOption,
    force: bool = typer.Option(False, "--force", help="Pull again even if the SIF file exists."),
) -> None:
    """Pull the container images of the stack's services (apptainer pull into `sif:`, docker/podman pull)."""
    stack, _ = choose_stack(file)
    for pull in image_pulls(stack, service, force=force):
        if pull.argv is None:
            console.print(f"{pull.service}: nothing to pull ({pull.reason})")
            continue
        if pull.target and Path(pull.target).exists() and not force:
            console.print(f"{pull.service}: {pull.target} is already there (--force pulls again)")
            continue
        if pull.target:
            Path(pull.target).parent.mkdir(parents=True, exist_ok=True)
        console.print(f"{pull.service}: {' '.join(pull.argv)}")
        _run(pull.argv)


def _run(argv: list[str]) -> None:
    try:
        code = subprocess.run(argv, check=False).returncode
    except FileNotFoundError:
        raise RuntimeUnavailable(f"{argv[0]} is not installed", fix=f"install {argv[0]}, or pull elsewhere") from None
    if code != 0:
        raise DownloadError(f"`{' '.join(argv)}` failed with exit code {code}")
