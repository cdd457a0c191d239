"""Which files of a repository a pull fetches (pure: a file listing in, a selection out).

Repositories often carry the same weights several times (safetensors and `.bin`, Mistral's
`consolidated.safetensors` next to the sharded HF files) or dozens of GGUF quants. An engine needs
one set, plus the small config and tokenizer files. The rules are the tables below.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from dataclasses import dataclass

from servestack.downloads.hub import RemoteFile
from servestack.errors import DownloadError

# Weight formats an engine loads, most preferred first: only the first one present is fetched.
WEIGHT_FORMATS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("safetensors", ("*.safetensors",)),
    ("PyTorch .bin", ("*.bin",)),
    ("PyTorch .pth", ("*.pth", "*.pt")),
)
# (present, duplicate): when files matching `present` are there, files matching `duplicate` hold the same weights.
DUPLICATE_WEIGHTS: tuple[tuple[str, str, str], ...] = (
    ("model*.safetensors", "consolidated*.safetensors", "the same weights in Mistral's format"),
)
# Small files an engine reads next to the weights (top level of the repository only).
SUPPORT_FILES: tuple[str, ...] = ("*.json", "*.py", "*.txt", "*.model", "*.tiktoken", "*.jinja", "tokenizer*")
# GGUF quants in order of preference when the reference names none (llama.cpp's usual default first).
GGUF_PREFERENCE: tuple[str, ...] = (
    "Q4_K_M",
    "Q4_K_S",
    "Q5_K_M",
    "Q4_0",
    "Q6_K",
    "Q8_0",
    "IQ4_XS",
    "Q5_K_S",
    "Q3_K_M",
    "BF16",
    "F16",
)

# Ollama's tag spellings of GGUF quants that files name otherwise.
OLLAMA_QUANTS = {"FP16": "F16", "FP32": "F32"}

_QUANT_TAG = re.compile(
    r"(?<![A-Za-z0-9])(I?Q\d+(?:_[A-Z0-9]+)*|TQ\d_\d|BF16|FP16|F16|F32|MXFP4(?:_MOE)?)(?![A-Za-z0-9])",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Selection:
    """The files to fetch, what they are (`description`), and notes on what was left out."""

    files: tuple[RemoteFile, ...]
    description: str
    skipped: tuple[str, ...] = ()

    @property
    def total_bytes(self) -> int:
        return sum(f.size or 0 for f in self.files)


def select_files(files: Sequence[RemoteFile], *, include: Sequence[str] = (), quant: str | None = None) -> Selection:
    """Choose the files to fetch: those matching `include` if given, else one GGUF quant or one weight set."""
    if include:
        return _select_included(files, include)
    ggufs = [f for f in files if f.path.lower().endswith(".gguf")]
    weights = _top_level([f for f in files if _matches_any(f.path, _all_weight_patterns())])
    if quant is not None or (ggufs and not weights):
        return _select_gguf(ggufs, quant)
    if weights:
        return _select_weights(files)
    raise DownloadError(
        "the repository holds no weights servestack recognises (safetensors, .bin, .pth or .gguf)",
        fix="choose files with --include PATTERN",
    )


def quant_of(path: str) -> str | None:
    """The quantization named in a GGUF file's path (`Q4_K_M`, `IQ4_XS`, `BF16` ...), upper-case."""
    tags = _QUANT_TAG.findall(path)
    return tags[-1].upper() if tags else None


def parse_quant(text: str) -> str | None:
    """`text` as a GGUF quant tag, upper-case (Ollama's `fp16` is the `F16` file), or None when it is not one."""
    tag = text.strip().upper()
    tag = OLLAMA_QUANTS.get(tag, tag)
    return tag if _QUANT_TAG.fullmatch(tag) else None


def _select_included(files: Sequence[RemoteFile], include: Sequence[str]) -> Selection:
    patterns = [p + "*" if p.endswith("/") else p for p in include]
    chosen = tuple(f for f in files if _matches_any(f.path, patterns))
    if not chosen:
        sample = ", ".join(f.path for f in files[:8]) + (" ..." if len(files) > 8 else "")
        raise DownloadError(
            f"no file of the repository matches {', '.join(include)}", fix=f"its files: {sample or '(none)'}"
        )
    return Selection(chosen, f"files matching {', '.join(include)}")


def _select_gguf(ggufs: Sequence[RemoteFile], quant: str | None) -> Selection:
    models = [f for f in ggufs if not f.path.rsplit("/", 1)[-1].lower().startswith("mmproj")]
    skipped: tuple[str, ...] = ()
    if len(models) < len(ggufs):
        skipped += (f"{len(ggufs) - len(models)} mmproj file(s) (vision projectors; --include to add them)",)
    groups: dict[str | None, list[RemoteFile]] = {}
    for f in models:
        groups.setdefault(quant_of(f.path), []).append(f)
    available = ", ".join(sorted(str(q) for q in groups if q)) or "(none named)"
    if quant is not None:
        chosen = groups.get(quant.upper())
        if not chosen:
            raise DownloadError(f"the repository has no GGUF quant {quant}", fix=f"available quants: {available}")
        tag: str | None = quant.upper()
    else:
        tag = next((q for q in GGUF_PREFERENCE if q in groups), None)
        if tag is None and len(groups) != 1:
            hint = "no GGUF file" if not groups else f"available quants: {available}"
            raise DownloadError(
                "cannot tell which GGUF file to fetch", fix=f"name one as ORG/NAME:QUANT or use --include ({hint})"
            )
        tag = tag if tag is not None else next(iter(groups))
        chosen = groups[tag]
    others = len(models) - len(chosen)
    if others:
        skipped += (f"{others} GGUF file(s) of other quants ({available})",)
    label = f"GGUF quant {tag}" if tag else "the GGUF file"
    return Selection(tuple(chosen), f"{label} ({_count(chosen)})", skipped)


def _select_weights(files: Sequence[RemoteFile]) -> Selection:
    top = _top_level(files)
    name, patterns = next((n, p) for n, p in WEIGHT_FORMATS if any(_matches_any(f.path, p) for f in top))
    weights = [f for f in top if _matches_any(f.path, patterns)]
    skipped: list[str] = []
    duplicates: list[RemoteFile] = []
    for present, duplicate, why in DUPLICATE_WEIGHTS:
        if any(fnmatch.fnmatch(f.path, present) for f in weights):
            dropped = [f for f in weights if fnmatch.fnmatch(f.path, duplicate)]
            weights = [f for f in weights if f not in dropped]
            duplicates += dropped
            if dropped:
                skipped.append(f"{', '.join(f.path for f in dropped)} ({why})")
    support = [f for f in top if _matches_any(f.path, SUPPORT_FILES) and f not in weights]
    other = [
        f for f in files if _matches_any(f.path, _all_weight_patterns()) and f not in weights and f not in duplicates
    ]
    if other:
        skipped.append(f"{len(other)} file(s) in other weight formats or folders ({_suffixes(other)})")
    chosen = sorted(support, key=lambda f: f.path) + sorted(weights, key=lambda f: f.path)
    description = f"{name} weights ({_count(weights)}) with {len(support)} config/tokenizer file(s)"
    return Selection(tuple(chosen), description, tuple(skipped))


def _all_weight_patterns() -> tuple[str, ...]:
    return tuple(p for _, patterns in WEIGHT_FORMATS for p in patterns)


def _top_level(files: Sequence[RemoteFile]) -> list[RemoteFile]:
    return [f for f in files if "/" not in f.path]


def _matches_any(path: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatch(path, p) for p in patterns)


def _suffixes(files: Sequence[RemoteFile]) -> str:
    return ", ".join(sorted({"." + f.path.rsplit(".", 1)[-1] for f in files}))


def _count(files: Sequence[RemoteFile]) -> str:
    return f"{len(files)} file{'s' if len(files) != 1 else ''}"
