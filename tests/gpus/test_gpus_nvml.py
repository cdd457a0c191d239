"""The NVML inventory, read through a fake `pynvml` passed as a parameter."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from servestack.gpus import GIB, Inventory, detect_inventory, read_nvml_inventory


class FakeNVMLError(Exception):
    pass


@dataclass
class Memory:
    total: int
    free: int
    used: int = 0


@dataclass
class FakeNvml:
    """The subset of pynvml the inventory uses; `names` as bytes mimics nvidia-ml-py before 11.515."""

    names: list[str | bytes] = field(default_factory=list)
    memory: list[Memory] = field(default_factory=list)
    cuda: int = 12040
    driver: str | bytes = "550.54.15"
    fail_init: bool = False
    calls: list[str] = field(default_factory=list)
    NVMLError = FakeNVMLError

    def nvmlInit(self) -> None:
        self.calls.append("init")
        if self.fail_init:
            raise FakeNVMLError("NVML Shared Library Not Found")

    def nvmlShutdown(self) -> None:
        self.calls.append("shutdown")

    def nvmlDeviceGetCount(self) -> int:
        return len(self.names)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetName(self, handle: int) -> str | bytes:
        return self.names[handle]

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> Memory:
        return self.memory[handle]

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        return self.cuda

    def nvmlSystemGetDriverVersion(self) -> str | bytes:
        return self.driver


def test_gpus_are_read_with_total_and_free_memory() -> None:
    h200 = 143771 * 2**20
    nvml = FakeNvml(
        names=["NVIDIA H200 NVL", b"NVIDIA H200 NVL"],
        memory=[Memory(total=h200, free=h200 - GIB), Memory(total=h200, free=60 * GIB)],
    )
    inventory = read_nvml_inventory(nvml)
    assert inventory is not None
    assert [(g.index, g.name) for g in inventory.gpus] == [(0, "NVIDIA H200 NVL"), (1, "NVIDIA H200 NVL")]
    assert inventory.gpus[1].free_bytes == 60 * GIB
    assert inventory.gpus[1].available_bytes == 60 * GIB
    assert inventory.cuda_driver_version == "12.4"
    assert inventory.driver_version == "550.54.15"
    assert inventory.source == "nvml"
    assert nvml.calls == ["init", "shutdown"]


def test_no_driver_means_a_cpu_machine() -> None:
    nvml = FakeNvml(fail_init=True)
    assert read_nvml_inventory(nvml) is None
    assert detect_inventory(nvml) == Inventory.cpu()


def test_a_driver_with_no_gpu_is_a_cpu_machine() -> None:
    assert detect_inventory(FakeNvml()).is_cpu


@pytest.mark.parametrize(("encoded", "version"), [(12040, "12.4"), (12080, "12.8"), (11020, "11.2"), (13000, "13.0")])
def test_cuda_versions_decode(encoded: int, version: str) -> None:
    inventory = read_nvml_inventory(FakeNvml(cuda=encoded))
    assert inventory is not None and inventory.cuda_driver_version == version
