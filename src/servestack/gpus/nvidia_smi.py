"""What `nvidia-smi` says about the NVIDIA driver: the CUDA version it supports.

NVML does not report that version in every binding, `nvidia-smi` always prints it in its header
(`| NVIDIA-SMI 550.54.15   Driver Version: 550.54.15   CUDA Version: 12.4 |`) and in `-q` output
(`CUDA Version : 12.4`). Parsing is pure; `read_driver_cuda` is the one place that runs the tool.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Sequence

_CUDA_VERSION = re.compile(r"CUDA Version\s*:\s*(\d+\.\d+)")
_DRIVER_VERSION = re.compile(r"Driver Version\s*:\s*([\d.]+)")
TIMEOUT_SECONDS = 20.0

Runner = Callable[[Sequence[str]], str]


def parse_cuda_version(text: str) -> str | None:
    """The driver's CUDA version (`12.4`) in `nvidia-smi` or `nvidia-smi -q` output."""
    match = _CUDA_VERSION.search(text)
    return match.group(1) if match else None


def parse_driver_version(text: str) -> str | None:
    match = _DRIVER_VERSION.search(text)
    return match.group(1) if match else None


def run_nvidia_smi(argv: Sequence[str]) -> str:
    """Run nvidia-smi; empty output when it is missing or fails (no driver: no GPUs to use)."""
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=TIMEOUT_SECONDS, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout if done.returncode == 0 else ""


def read_driver_cuda(run: Runner = run_nvidia_smi) -> str | None:
    """The CUDA version the installed NVIDIA driver supports, or None without a working driver."""
    return parse_cuda_version(run(["nvidia-smi"]))
