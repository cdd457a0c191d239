"""GPU memory in use per process group, from NVML: what `servestack status` shows per engine.

An engine's tensor-parallel workers are separate processes in the engine's process group, so memory
is summed by group. No driver (or no NVML) → None, and status leaves the column out.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from servestack.gpus.nvml import nvml_session


def gpu_memory_by_group(nvml: Any = None, getpgid: Callable[[int], int] = os.getpgid) -> dict[int, int] | None:
    """Bytes of GPU memory used by each process group (summed over every GPU), or None without NVML."""
    with nvml_session(nvml) as session:
        if session is None:
            return None
        usage: dict[int, int] = {}
        for index in range(session.nvmlDeviceGetCount()):
            handle = session.nvmlDeviceGetHandleByIndex(index)
            for process in session.nvmlDeviceGetComputeRunningProcesses(handle):
                group = _group_of(process.pid, getpgid)
                if group is not None and process.usedGpuMemory:
                    usage[group] = usage.get(group, 0) + int(process.usedGpuMemory)
        return usage
    return None  # type: ignore[unreachable]  # an NVML error in the middle, which nvml_session swallows: no answer


def _group_of(pid: int, getpgid: Callable[[int], int]) -> int | None:
    try:
        return getpgid(pid)
    except (ProcessLookupError, PermissionError):
        return None  # gone, or in another container's pid space
