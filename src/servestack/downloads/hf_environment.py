"""Where the Hugging Face hub is and who we are there, read from an environment mapping.

huggingface_hub reads these variables itself when it is imported; servestack reads them from the
mapping it is given (the process environment plus the stack's `.env`) and passes every value
explicitly, so a stack's `.env` counts and tests need no global state.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_ENDPOINT = "https://huggingface.co"
TOKEN_VARIABLES = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
_TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class HfEnvironment:
    """The hub endpoint, the cache folder, the token (never in `repr`) and whether to stay offline."""

    endpoint: str = DEFAULT_ENDPOINT
    cache_dir: Path = field(default_factory=lambda: Path("~/.cache/huggingface/hub").expanduser())
    token: str | None = field(default=None, repr=False)
    offline: bool = False

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> HfEnvironment:
        hf_home = _hf_home(environ)
        cache = environ.get("HF_HUB_CACHE") or environ.get("HUGGINGFACE_HUB_CACHE") or str(hf_home / "hub")
        return cls(
            endpoint=(environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/"),
            cache_dir=Path(os.path.expandvars(cache)).expanduser(),
            token=_token(environ, hf_home),
            offline=environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE,
        )


def _hf_home(environ: Mapping[str, str]) -> Path:
    if environ.get("HF_HOME"):
        return Path(os.path.expandvars(environ["HF_HOME"])).expanduser()
    xdg = environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(xdg).expanduser() / "huggingface"


def _token(environ: Mapping[str, str], hf_home: Path) -> str | None:
    """The token from the environment, else the one `hf auth login` stored; None if there is none."""
    for name in TOKEN_VARIABLES:
        if environ.get(name, "").strip():
            return environ[name].strip()
    stored = Path(environ.get("HF_TOKEN_PATH") or hf_home / "token").expanduser()
    try:
        return stored.read_text().strip() or None
    except OSError:
        return None
