"""Package attributes imported on first use (PEP 562).

`servestack up` starts its engines before it imports the gateway's HTTP stack (uvicorn, aiohttp:
about 0.4 s); packages whose `__init__` re-exports heavy modules name them here instead.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_attributes(package: str, homes: Mapping[str, str]) -> Callable[[str], Any]:
    """A module `__getattr__` that imports `package.<homes[name]>` when `name` is first read."""

    def __getattr__(name: str) -> Any:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{home}"), name)

    return __getattr__
