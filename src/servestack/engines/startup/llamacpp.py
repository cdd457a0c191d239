"""What llama.cpp's startup log states: llama-server's, and llama-cpp-python's (the same library prints the
same lines). Every wording in tests/plan/corpus (builds 1884 to 5466) and llama-cpp-python 0.3.36's.

Buffers are per device, in MiB: `load_tensors:        CUDA0 model buffer size = 15773.70 MiB` (and
`CPU_Mapped`, the weights left in host memory), `llama_kv_cache:        CPU KV buffer size =    45.00 MiB`
(`llama_kv_cache_init:` / `llama_kv_cache_unified:` before; a model with sliding-window layers has two
caches, so two lines per device). Late-2023 builds print totals instead: `VRAM used: 25145.55 MiB` and
`mem required  =   70.71 MiB` for the weights, `VRAM kv self = 256.00 MB` for the KV cache.

KV tokens are the cache's cells: `llama_kv_cache: size =   45.00 MiB (  2048 cells, …)` (the largest cache
when there are two), `kv_size = 16384` in early-2025 builds, else the context, `n_ctx = 2048`.
The build: `build: 4670 (d80be897)`, `main: build = 1884 (0b2fca9a)`.
"""

from __future__ import annotations

import re

from servestack.engines.startup.base import MIB, NUMBER, Allocation, Device, Evidence, line_of, matched, number, scaled

BUFFER = re.compile(rf" (model|KV) buffer size = +({NUMBER}) MiB")  # after the device's name
DEVICE = re.compile(r"(\w+)$")
OLD_WEIGHTS = re.compile(rf"VRAM used: +({NUMBER}) MiB|mem required += +({NUMBER}) MiB")
OLD_KV = re.compile(rf"VRAM kv self = +({NUMBER}) MB")
CELLS = re.compile(r"\( *(\d+) cells,|kv_size = (\d+)")
CONTEXT = re.compile(r"n_ctx += +(\d+)")
BUILD = re.compile(r"build(?::| =) (\d+) \(([0-9a-f]+)\)")


class LlamaCppStartupLog:
    def parse(self, log: str) -> Allocation:
        seen = Evidence()
        devices = _devices(log, seen)
        on_gpus = [d for d in devices if d.on_gpu] or devices  # per GPU; on the CPU, host memory
        weights = [d.weights_bytes for d in on_gpus if d.weights_bytes]
        kv = [d.kv_bytes for d in on_gpus if d.kv_bytes]
        build = next(seen.matches(BUILD, log), None)
        return Allocation(
            kv_tokens=_cells(log, seen),
            kv_bytes=max(kv) if kv else None,
            weights_bytes=max(weights) if weights else None,
            devices=devices,
            version=f"b{build.group(1)}-{build.group(2)}" if build else None,  # as llama-server's --version
            lines=seen.kept(),
        )


def _devices(log: str, seen: Evidence) -> tuple[Device, ...]:
    """Each device's model and KV buffers (a device's caches summed): devices with weights first."""
    weights: dict[str, int] = {}
    kv: dict[str, int] = {}
    for m in seen.matches(BUFFER, log):
        start, line = line_of(log, m)
        device = DEVICE.search(line[: m.start() - start])
        if device is not None:
            buffers = weights if m.group(1) == "model" else kv
            buffers[device.group(1)] = buffers.get(device.group(1), 0) + scaled(m.group(2), MIB)
    for m in seen.matches(OLD_WEIGHTS, log):
        name = "VRAM" if m.group(1) is not None else "CPU"
        weights[name] = scaled(m.group(1) or m.group(2), MIB)
    for m in seen.matches(OLD_KV, log):
        kv["VRAM"] = scaled(m.group(1), MIB)
    names = dict.fromkeys([*weights, *kv])
    return tuple(Device(name, weights.get(name, 0), kv.get(name, 0)) for name in names)


def _cells(log: str, seen: Evidence) -> int | None:
    cells = [int(matched(m)) for m in seen.matches(CELLS, log)]
    if cells:
        return max(cells)
    context = [int(number(m.group(1))) for m in seen.matches(CONTEXT, log)]
    return context[-1] if context else None
