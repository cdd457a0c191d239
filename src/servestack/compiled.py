"""Whether servestack runs as the compiled build (`SERVESTACK_COMPILE=1 pip install .`, setup.py): the
gateway's request path as mypyc C extensions, loaded in place of the Python files they were built from."""

from __future__ import annotations

import importlib.machinery
from pathlib import Path
from types import ModuleType

PACKAGE = Path(__file__).parent


def is_compiled(module: ModuleType) -> bool:
    return (module.__file__ or "").endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))


def compiled_count() -> int:
    """How many of servestack's modules are extensions (0: the plain Python build), without importing them."""
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    return sum(1 for path in PACKAGE.rglob("*.so") if path.name.endswith(suffixes))


def build_name() -> str:
    count = compiled_count()
    return f"compiled with mypyc: {count} gateway modules" if count else "Python"
