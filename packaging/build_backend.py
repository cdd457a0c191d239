"""setuptools' build backend, plus mypy (mypyc) and pydantic (its mypy plugin, which pyproject's mypy
settings load) in the build environment when SERVESTACK_COMPILE=1 asks for the compiled build (setup.py)."""

from __future__ import annotations

import os

from setuptools import build_meta
from setuptools.build_meta import *  # noqa: F403  (the backend's other hooks, unchanged)

COMPILE_REQUIRES = ["mypy>=1.10", "pydantic>=2.6"]


def _extra() -> list[str]:
    return COMPILE_REQUIRES if os.environ.get("SERVESTACK_COMPILE") == "1" else []


def get_requires_for_build_wheel(config_settings: dict | None = None) -> list[str]:
    return build_meta.get_requires_for_build_wheel(config_settings) + _extra()


def get_requires_for_build_editable(config_settings: dict | None = None) -> list[str]:
    return build_meta.get_requires_for_build_editable(config_settings) + _extra()
