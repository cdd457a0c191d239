"""Read the inventory of this machine from NVML (`nvidia-ml-py`, imported as `pynvml`).

The NVML module is a parameter so that tests pass a fake; in production it is imported lazily and a
missing library or driver simply means "no GPU here".
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from servestack.gpus.inventory import Gpu, Inventory


def detect_inventory(nvml: Any = None) -> Inventory:
    """This machine's GPUs from NVML, or a CPU-only inventory when there is no NVIDIA driver."""
    return read_nvml_inventory(nvml) or Inventory.cpu()


def read_nvml_inventory(nvml: Any = None) -> Inventory | None:
    """The GPUs NVML reports (index, name, total and free memory, driver CUDA version), or None
    when NVML or its driver is not available."""
    with nvml_session(nvml) as session:
        if session is None:
            return None
        count = session.nvmlDeviceGetCount()
        gpus = tuple(_read_gpu(session, index) for index in range(count))
        return Inventory(
            gpus=gpus,
            source="nvml",
            driver_version=_text(session.nvmlSystemGetDriverVersion()),
            cuda_driver_version=_cuda_version(session.nvmlSystemGetCudaDriverVersion()),
        )
    return None  # type: ignore[unreachable]  # an NVML error in the middle, which nvml_session swallows: no answer


@contextlib.contextmanager
def nvml_session(nvml: Any = None) -> Iterator[Any]:
    """An initialised NVML module (shut down afterwards), or None without the library or a driver.

    An NVML error inside the block also yields "no answer" (the caller returns None from it).
    """
    if nvml is None:
        try:
            import pynvml
        except ImportError:
            yield None
            return
        nvml = pynvml
    error = getattr(nvml, "NVMLError", Exception)
    try:
        nvml.nvmlInit()
    except (error, OSError):
        yield None
        return
    try:
        yield nvml
    except error:
        return
    finally:
        nvml.nvmlShutdown()


def _read_gpu(nvml: Any, index: int) -> Gpu:
    handle = nvml.nvmlDeviceGetHandleByIndex(index)
    memory = nvml.nvmlDeviceGetMemoryInfo(handle)
    return Gpu(
        index=index,
        name=_text(nvml.nvmlDeviceGetName(handle)),
        total_bytes=int(memory.total),
        free_bytes=int(memory.free),
    )


def _text(value: str | bytes) -> str:
    # nvidia-ml-py returned bytes before 11.515 and str since.
    return value.decode() if isinstance(value, bytes) else str(value)


def _cuda_version(value: int) -> str:
    """NVML encodes CUDA 12.4 as 12040."""
    return f"{value // 1000}.{value % 1000 // 10}"
