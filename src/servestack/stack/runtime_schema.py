"""Where a service's engine runs (`runtime:`): natively (an interpreter, venv, conda or pixi environment),
in Apptainer, or in a Docker or podman container."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Discriminator, Field, Tag, model_validator

from servestack.stack.strict import Strict as _Strict

CudaVersion = Annotated[str, Field(pattern=r"^\d+\.\d+$", description="A CUDA version, MAJOR.MINOR (e.g. 12.8).")]


class PixiEnvironment(_Strict):
    """A pixi project whose environment holds the engine (`pixi run --manifest-path M --environment E`).

    Give one `environment`, or several `environments` with the CUDA version each needs: the newest
    one the NVIDIA driver supports is chosen at launch.
    """

    manifest: str = Field(min_length=1, description="pixi.toml (or pyproject.toml), or the project folder.")
    environment: str | None = None
    environments: dict[str, CudaVersion] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_way_to_choose(self) -> PixiEnvironment:
        if self.environment and self.environments:
            raise ValueError("give either 'environment' or 'environments' (chosen by CUDA version), not both")
        return self


class NativeRuntime(_Strict):
    """Run the engine as a process on this machine.

    Where the engine lives: `python` (an interpreter), `venv` (shorthand for `<venv>/bin/python`),
    `conda` (an environment name, run with `conda run -n`), or `pixi`. None given: the interpreter
    running servestack, or the engine binary on PATH. `binary` names the engine executable for
    engines that run as one (`llama-server`, `mistralrs`, `vllm`).
    """

    kind: Literal["native"] = "native"
    python: str | None = None
    venv: str | None = None
    conda: str | None = None
    pixi: PixiEnvironment | None = None
    binary: str | None = None

    @model_validator(mode="after")
    def _one_environment(self) -> NativeRuntime:
        given = [name for name in ("python", "venv", "conda", "pixi") if getattr(self, name)]
        if len(given) > 1:
            raise ValueError(f"give only one of 'python', 'venv', 'conda', 'pixi' (got {', '.join(given)})")
        return self


class ApptainerRuntime(_Strict):
    """Run the engine in an Apptainer container (`apptainer exec --nv`).

    `image` is a SIF file or a `docker://` (`oras://`, `library://`) reference; with `sif`, the
    reference is pulled into that file by `servestack pull-image` and the file is run.
    `model_cache` (a host folder of the Hugging Face hub cache) is bound at /root/.cache/huggingface.
    """

    kind: Literal["apptainer"]
    image: str = Field(min_length=1)
    sif: str | None = None
    binds: list[str] = Field(default_factory=list, description="SRC[:DST[:ro]] as for `apptainer --bind`.")
    model_cache: str | None = None
    nv: bool = Field(default=True, description="Pass `--nv` (NVIDIA GPUs and driver into the container).")
    options: list[str] = Field(default_factory=list, description="Extra `apptainer exec` flags, as given.")

    @model_validator(mode="after")
    def _sif_needs_reference(self) -> ApptainerRuntime:
        if self.sif and "://" not in self.image:
            raise ValueError("'sif' is where a pulled image is kept: 'image' must then be a docker:// reference")
        return self


class ContainerRuntime(_Strict):
    """What Docker and podman share: `IMAGE`, mounts, the network, `--ipc` and extra `run` flags.

    `volumes` are `HOST:CONTAINER[:ro]`; `model_cache` (a host folder of the Hugging Face hub cache)
    is mounted at /root/.cache/huggingface. `network: host` shares the host's network (the engine
    binds the service's host and port itself); otherwise the port is published on the service's host.
    """

    image: str = Field(min_length=1)
    volumes: list[str] = Field(default_factory=list)
    model_cache: str | None = None
    network: str | None = Field(default=None, description="`--network`: host, or a network name; none: the default.")
    ipc: str | None = Field(default="host", description="`--ipc` mode; tensor-parallel workers share memory.")
    options: list[str] = Field(default_factory=list, description="Extra `run` flags, as given.")


class DockerRuntime(ContainerRuntime):
    """Run the engine in a Docker container (`docker run --rm --init --gpus ... IMAGE`)."""

    kind: Literal["docker"]


class PodmanRuntime(ContainerRuntime):
    """Run the engine in a podman container (`podman run --rm --init --device nvidia.com/gpu=N ... IMAGE`)."""

    kind: Literal["podman"]


def _runtime_kind(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("kind", "native"))
    return str(getattr(value, "kind", "native"))


RuntimeSpec = Annotated[
    Annotated[NativeRuntime, Tag("native")]
    | Annotated[ApptainerRuntime, Tag("apptainer")]
    | Annotated[DockerRuntime, Tag("docker")]
    | Annotated[PodmanRuntime, Tag("podman")],
    Discriminator(_runtime_kind),
]
RUNTIME_KINDS: dict[str, type[BaseModel]] = {
    "native": NativeRuntime,
    "apptainer": ApptainerRuntime,
    "docker": DockerRuntime,
    "podman": PodmanRuntime,
}
