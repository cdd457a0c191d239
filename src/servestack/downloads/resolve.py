"""What an engine is given for a stack's `model:`, now that `model:` may be a short name or a GGUF reference.

    ./weights/x.gguf, package:…, modelscope:…    as `stack.resolve_model` makes them (paths)
    qwen2.5-coder:32b                             the library's repository in the engine's format: the GGUF
                                                  file once pulled (llama.cpp), the repository id (vLLM)
    org/name-GGUF:Q5_K_M, qwen2.5-coder:32b-q5_k_m   the GGUF file pulled into the HF cache
    org/name                                      unchanged (an engine that loads safetensors fetches or reads
                                                  the HF cache itself); for a GGUF-only engine, the pulled file

A GGUF model that is not on this machine is a StackError saying which `servestack pull` fetches it:
engines are given files, and a GGUF engine cannot fetch one. Only files are read here (no network).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from servestack.downloads.hf_environment import HfEnvironment
from servestack.downloads.hub import walk_files
from servestack.downloads.library import Library
from servestack.downloads.reference import ModelReference, parse_reference
from servestack.downloads.selection import select_files
from servestack.errors import DownloadError, StackError
from servestack.modelinfo import cached_snapshot
from servestack.stack import resolve_model
from servestack.stack.paths import names_local_model


def engine_model(model: str, *, formats: Sequence[str], environ: Mapping[str, str], models_dir: Path) -> str:
    """The path or id an engine that loads `formats` is given for `model` (StackError: not here, or unknown)."""
    if names_local_model(model):
        return resolve_model(model, models_dir=models_dir)
    if not formats:
        return model  # an engine that loads no weights (the simulator) takes the name as written
    reference = _reference(model, formats)
    if reference is None:
        return model
    gguf = reference.gguf or tuple(formats) == ("gguf",)
    if gguf:
        found = pulled_gguf(reference, HfEnvironment.from_environ(environ).cache_dir)
        if found is None:
            raise StackError(
                f"model {model!r} ({reference}) has not been downloaded: a GGUF engine is given the file",
                fix=f"servestack pull {model}",
            )
        return str(found)
    return reference.repo_id


def pulled_gguf(reference: ModelReference, hf_cache: Path) -> Path | None:
    """The GGUF file (a split model's first part) of `reference` in the HF cache's current snapshot."""
    snapshot = cached_snapshot(hf_cache, reference.repo_id)
    if snapshot is None:
        return None
    files = [f for f in walk_files(snapshot) if f.path.lower().endswith(".gguf")]
    try:
        chosen = select_files(files, quant=reference.quant).files if files else ()
    except DownloadError:
        return None
    return snapshot / chosen[0].path if chosen else None


def _reference(model: str, formats: Sequence[str]) -> ModelReference | None:
    """The hub model `model` names, or None for an id this machine cannot parse (left to the engine)."""
    try:
        return parse_reference(model, formats)
    except DownloadError as error:
        if Library.builtin().knows(model):
            raise StackError(error.message, fix=error.fix) from None
        return None
