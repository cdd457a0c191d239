"""Per-engine readers of a start's log: what the engine says it allocated (KV tokens and bytes, weights per
GPU). Each engine's adapter declares its reader (`startup_log`), or `Silent` with the reason it has none."""

from servestack.engines.startup.base import Allocation, Device, Silent, StartupLog

__all__ = ["Allocation", "Device", "Silent", "StartupLog"]
