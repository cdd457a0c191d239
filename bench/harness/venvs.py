"""Separate virtual environments for the peers we compare against, installed on first use.

Peers (the SGLang router, the LiteLLM proxy) never go into servestack's own environment: each gets
a venv under `$SERVESTACK_BENCH_VENVS` (default `~/.cache/servestack/bench`). A marker file holds
the requirements it was built for, so a second run reuses it and a changed pin rebuilds it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

PEERS = {
    "sglang-router": ["sglang-router==0.3.2"],
    # 1.109.1 does not resolve here (certifi); the issue pins 1.106.2.
    "litellm": ["litellm[proxy]==1.106.2"],
}


def venvs_root() -> Path:
    return Path(os.environ.get("SERVESTACK_BENCH_VENVS") or Path.home() / ".cache" / "servestack" / "bench")


def peer_python(name: str, *, install: bool = True) -> Path | None:
    """The interpreter of the peer's venv, installing it if needed (None: absent and not installing)."""
    requirements = PEERS[name]
    venv = venvs_root() / name
    python = venv / "bin" / "python"
    marker = venv / ".servestack-requirements"
    wanted = "\n".join(requirements) + "\n"
    if python.exists() and marker.exists() and marker.read_text() == wanted:
        return python
    if not install:
        return None
    if venv.exists():
        shutil.rmtree(venv)
    print(f"installing {' '.join(requirements)} into {venv} (once) …", file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", *requirements],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    marker.write_text(wanted)
    return python


if __name__ == "__main__":
    for peer in sys.argv[1:] or list(PEERS):
        print(peer, peer_python(peer))
