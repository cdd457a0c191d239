"""setuptools' build backend, plus what the compiled build (setup.py) needs in the build environment when
SERVESTACK_COMPILE=1 asks for it: mypy (mypyc), and servestack's own dependencies, so that mypy compiles
against the same types as CI's type check does (a dependency it cannot see is typed Any, and its compiled
code differs)."""

from __future__ import annotations

import os
import tomllib

from setuptools import build_meta
from setuptools.build_meta import *  # noqa: F403  (the backend's other hooks, unchanged)

COMPILER = ["mypy>=1.10"]


def _extra() -> list[str]:
    if os.environ.get("SERVESTACK_COMPILE") != "1":
        return []
    with open("pyproject.toml", "rb") as file:  # the backend runs in the project's directory
        dependencies: list[str] = tomllib.load(file)["project"]["dependencies"]
    return COMPILER + dependencies


def get_requires_for_build_wheel(config_settings: dict | None = None) -> list[str]:
    return build_meta.get_requires_for_build_wheel(config_settings) + _extra()


def get_requires_for_build_editable(config_settings: dict | None = None) -> list[str]:
    return build_meta.get_requires_for_build_editable(config_settings) + _extra()
