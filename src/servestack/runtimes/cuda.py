"""Choosing among environments built for different CUDA versions, by what the driver supports.

Pure: the driver's CUDA version comes in (read by `gpus/nvidia_smi.py` at the edge).
An environment built for CUDA X.Y runs on a driver that reports CUDA ≥ X.Y.
"""

from __future__ import annotations

from collections.abc import Mapping

from servestack.errors import RuntimeUnavailable


def cuda_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def choose_environment(driver_cuda: str | None, environments: Mapping[str, str]) -> str:
    """The environment needing the newest CUDA the driver supports; RuntimeUnavailable if none fits."""
    needs = ", ".join(f"{name} needs CUDA {cuda}" for name, cuda in environments.items())
    if driver_cuda is None:
        raise RuntimeUnavailable(
            f"cannot choose a CUDA environment ({needs}): no NVIDIA driver found (nvidia-smi)",
            fix="install the NVIDIA driver, or name one environment with `environment:`",
        )
    driver = cuda_tuple(driver_cuda)
    fitting = [(cuda_tuple(cuda), name) for name, cuda in environments.items() if cuda_tuple(cuda) <= driver]
    if not fitting:
        raise RuntimeUnavailable(
            f"no environment fits the NVIDIA driver, which supports CUDA up to {driver_cuda} ({needs})",
            fix=f"upgrade the NVIDIA driver, or add an environment built for CUDA {driver_cuda} or older",
        )
    return max(fitting)[1]
