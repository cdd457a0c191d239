"""Parse an inventory spec: `4xH200`, `2xH100-80GB`, `1xA10G`, `8x141GiB`, `1x22.3GiB`, `cpu`.

Groups join with `,` or `+` (`2xH100-80GB,1xA10G`) and are numbered in order from GPU 0. A size is a
number with a unit: `GiB`/`MiB`/`TiB` are binary, `GB`/`MB`/`TB` decimal (`80GB` = 74.5 GiB; write
`H100-80GB` for the card). A bare name or size means one GPU.
"""

from __future__ import annotations

import difflib
import re

from servestack.errors import InventoryError
from servestack.gpus.inventory import Gpu, Inventory
from servestack.gpus.table import MIB, find_gpu_model, known_names

GROUP = re.compile(r"^(?:(?P<count>\d+)\s*[xX×*]\s*)?(?P<what>.+)$")
SIZE = re.compile(r"^(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>[KMGT]i?B)$", re.IGNORECASE)
UNITS = {"kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
CPU_SPECS = {"cpu", "none", "0"}


def parse_inventory(spec: str) -> Inventory:
    """The inventory a spec describes; raises InventoryError naming what it could not read."""
    text = spec.strip()
    if text.lower() in CPU_SPECS:
        return Inventory.cpu()
    gpus: list[Gpu] = []
    for group in re.split(r"[,+]", text):
        count, name, total = _parse_group(group.strip(), spec)
        gpus += [Gpu(index=len(gpus) + i, name=name, total_bytes=total) for i in range(count)]
    return Inventory(gpus=tuple(gpus), source=f"spec {text}")


def _parse_group(group: str, spec: str) -> tuple[int, str, int]:
    match = GROUP.match(group)
    if not group or match is None:
        raise InventoryError(f"GPU spec {spec!r}: empty group", fix="write e.g. 4xH200 or 2xH100-80GB,1xA10G")
    count = int(match["count"] or 1)
    if count < 1:
        raise InventoryError(f"GPU spec {spec!r}: a group needs at least one GPU")
    what = match["what"].strip()
    size = SIZE.match(what)
    if size:
        total = int(float(size["number"]) * UNITS[size["unit"].lower()])
        if total <= 0:
            raise InventoryError(f"GPU spec {spec!r}: a GPU needs some memory")
        return count, f"GPU {what}", total
    model = find_gpu_model(what)
    if model is None:
        close = difflib.get_close_matches(what.upper(), known_names(), n=3, cutoff=0.4)
        hint = f"did you mean {' or '.join(close)}? " if close else ""
        raise InventoryError(
            f"GPU spec {spec!r}: unknown GPU {what!r}",
            fix=f"{hint}known: {', '.join(known_names())}; or give the memory, e.g. {count}x80GiB",
        )
    return count, model.name, model.total_mib * MIB
