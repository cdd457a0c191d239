"""The optional compiled build: `SERVESTACK_COMPILE=1 pip install .` compiles the gateway's request path
with mypyc (C extensions beside the same Python, which stays the source of truth). Without the variable
this file adds nothing and servestack installs as plain Python. Everything else is in pyproject.toml.

Why: per request, most of the gateway's CPU was the Python interpreter (docs/benchmarks.md, "Per core").
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from setuptools import setup

GATEWAY = Path("src/servestack/gateway")
# The request path's rooms, whole, and the few edge modules a request passes through.
COMPILED_ROOMS = ("admission", "fleet", "openai", "relay", "telemetry")
COMPILED_FILES = [
    "src/servestack/asgi.py",
    "src/servestack/driven.py",
    "src/servestack/gateway/edge/corked.py",
    "src/servestack/gateway/edge/deadlines.py",
    "src/servestack/gateway/edge/http_connection.py",
    "src/servestack/gateway/edge/lane.py",
    "src/servestack/gateway/edge/lane_call.py",
    "src/servestack/gateway/edge/lane_cycle.py",
    "src/servestack/gateway/edge/listener.py",
    "src/servestack/gateway/edge/pipeline.py",
    "src/servestack/gateway/edge/protocol.py",
]
# Left as Python, each for what mypyc refuses or changes:
NOT_COMPILED = {
    "fleet/routing/candidates.py": "subclasses tuple (what runs per choice is in sampler.py, compiled)",
    "relay/upstream.py": "async generators (the ASGI path's engine call)",
    "relay/loading.py": "an async generator",
    "telemetry/tracing.py": "keeps the opentelemetry module as an attribute, which a native class loses",
}
# Also left as Python: errors.py (exceptions whose subclasses override `status` as class attributes).


BUILDING = {"bdist_wheel", "build_ext", "build"}


def compiled_paths() -> list[str]:
    paths = [str(path) for room in COMPILED_ROOMS for path in sorted((GATEWAY / room).rglob("*.py"))]
    skipped = {str(GATEWAY / name) for name in NOT_COMPILED}
    return [p for p in paths if p not in skipped and not p.endswith("__init__.py")] + COMPILED_FILES


def ext_modules() -> list:
    if os.environ.get("SERVESTACK_COMPILE") != "1":
        return []
    if "editable_wheel" in sys.argv:  # the extensions would shadow the sources being edited
        raise SystemExit("SERVESTACK_COMPILE=1 builds a wheel to install (pip install .), not an editable install")
    if not BUILDING.intersection(sys.argv):  # e.g. egg_info, while the backend asks what the build requires
        return []
    from mypyc.build import mypycify  # the build backend adds mypy when SERVESTACK_COMPILE=1

    # The project's mypy settings (pyproject.toml) type-check what is compiled, as CI checks it; an ignore
    # that another version of a dependency makes unneeded is no reason to fail the build.
    return mypycify(["--no-warn-unused-ignores", *compiled_paths()], opt_level="3")


setup(ext_modules=ext_modules())
