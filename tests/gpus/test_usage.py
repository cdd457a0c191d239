"""GPU memory per engine process group, read through a fake NVML, and shown by `status`."""

from __future__ import annotations

from types import SimpleNamespace

from rich.console import Console

from servestack.cli.running import status_table
from servestack.gpus import gpu_memory_by_group
from servestack.supervisor import ReplicaState, ReplicaStatus

GIB = 2**30


class FakeNvml:
    NVMLError = RuntimeError

    def __init__(self, processes: list[list[tuple[int, int]]]) -> None:
        self.processes = processes

    def nvmlInit(self) -> None:
        pass

    def nvmlShutdown(self) -> None:
        pass

    def nvmlDeviceGetCount(self) -> int:
        return len(self.processes)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetComputeRunningProcesses(self, handle: int) -> list[SimpleNamespace]:
        return [SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in self.processes[handle]]


def test_memory_is_summed_per_process_group_over_gpus() -> None:
    # Engine group 100: leader 100 and a TP worker 101 on two GPUs; pid 7 belongs to someone else.
    nvml = FakeNvml([[(100, 30 * GIB), (7, GIB)], [(101, 30 * GIB)]])
    groups = {100: 100, 101: 100, 7: 7}
    assert gpu_memory_by_group(nvml, getpgid=groups.__getitem__) == {100: 60 * GIB, 7: GIB}


def test_no_driver_means_no_column() -> None:
    class NoDriver(FakeNvml):
        def nvmlInit(self) -> None:
            raise RuntimeError("NVML Shared Library Not Found")

    assert gpu_memory_by_group(NoDriver([])) is None


def render(gpu_memory: dict[int, int] | None) -> str:
    replica = ReplicaState(
        service="glm", engine="sglang", models=["glm"], status=ReplicaStatus.READY, pid=100, pgid=100,
        port=30000, gpus=[0, 1], started_at=0, log_path="/tmp/glm.log",
    )  # fmt: skip
    console = Console(width=200, record=True)
    console.print(status_table([replica], gpu_memory))
    return console.export_text()


def test_status_shows_gpu_memory_when_nvml_can_tell() -> None:
    assert "GPU MEM" in render({100: 60 * GIB}) and "60.0 GiB" in render({100: 60 * GIB})
    assert "GPU MEM" not in render(None)
