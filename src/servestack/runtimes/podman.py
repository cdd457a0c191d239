"""The podman runtime: Docker's `run` command line (`docker.py`), run by `podman`.

Where they differ: GPUs are CDI devices (`--device nvidia.com/gpu=1`, named by index in the NVIDIA
Container Toolkit's CDI spec) rather than `--gpus`. `--init` runs podman's catatonit (Debian: the
`catatonit` package). Host quirks, such as another OCI runtime (`--runtime runc`) or ulimits below
podman's defaults, go in `options`.
"""

from __future__ import annotations

from servestack.runtimes.docker import DockerRuntimeWrapper


class PodmanRuntimeWrapper(DockerRuntimeWrapper):
    kind = "podman"
    cli = "podman"

    @staticmethod
    def gpu_flags(gpus: tuple[int, ...]) -> list[str]:
        return [arg for g in gpus for arg in ("--device", f"nvidia.com/gpu={g}")]
