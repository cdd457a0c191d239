"""`Gpu` and `Inventory`: the accelerators a plan is made for, read from NVML or parsed from a spec."""

from __future__ import annotations

from dataclasses import dataclass

GIB = 2**30


@dataclass(frozen=True)
class Gpu:
    """One GPU. `free_bytes` is None when planning for a machine we are not on (assume all free)."""

    index: int
    name: str
    total_bytes: int
    free_bytes: int | None = None

    @property
    def available_bytes(self) -> int:
        """What an engine starting now could use: free memory when known, else the total."""
        return self.total_bytes if self.free_bytes is None else self.free_bytes

    def describe(self) -> str:
        return f"GPU {self.index} ({self.name}, {self.total_bytes / GIB:.1f} GiB)"


@dataclass(frozen=True)
class Inventory:
    """The GPUs of one machine (none: a CPU-only machine), and where that list came from."""

    gpus: tuple[Gpu, ...] = ()
    source: str = "cpu"  # "nvml", "spec 4xH200", "cpu"
    driver_version: str | None = None
    cuda_driver_version: str | None = None  # the highest CUDA version the driver supports ("12.4")

    @classmethod
    def cpu(cls) -> Inventory:
        return cls()

    @property
    def is_cpu(self) -> bool:
        return not self.gpus

    @property
    def indices(self) -> list[int]:
        return [gpu.index for gpu in self.gpus]

    def gpu(self, index: int) -> Gpu | None:
        return next((gpu for gpu in self.gpus if gpu.index == index), None)

    def describe(self) -> str:
        if self.is_cpu:
            return "no GPU (CPU only)"
        names = sorted({gpu.name for gpu in self.gpus})
        counts = ", ".join(f"{sum(g.name == n for g in self.gpus)}× {n}" for n in names)
        cuda = f", driver CUDA {self.cuda_driver_version}" if self.cuda_driver_version else ""
        return f"{counts} ({self.source}{cuda})"
