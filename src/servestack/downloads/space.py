"""Disk space: checked before a download starts, so a 400 GB model does not fail at 380 GB."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from servestack.errors import DownloadError

FreeBytes = Callable[[Path], int]


def disk_free_bytes(path: Path) -> int:
    """Free bytes on the file system that holds `path` (or would hold it: its nearest existing parent)."""
    return shutil.disk_usage(existing_parent(path)).free


def existing_parent(path: Path) -> Path:
    path = path.expanduser().absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_disk_space(needed: int, target: Path, *, what: str, free_bytes: FreeBytes = disk_free_bytes) -> None:
    """Raise DownloadError, giving both numbers, if `needed` bytes do not fit where `target` lives."""
    if needed <= 0:
        return
    free = free_bytes(target)
    if free < needed:
        raise DownloadError(
            f"not enough disk space for {what}: it needs {format_bytes(needed)} ({needed:,} bytes), "
            f"{existing_parent(target)} has {format_bytes(free)} ({free:,} bytes) free",
            fix="free some space, or download to another disk with --dir DIR (or HF_HUB_CACHE=DIR for the HF cache)",
        )


def format_bytes(n: int) -> str:
    """`n` bytes in decimal units, as the hubs show sizes (1.5 GB = 1.5e9 bytes)."""
    size = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(size) < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")
