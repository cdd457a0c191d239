"""servestack's compiled build (`SERVESTACK_COMPILE=1`, setup.py) of this working tree, for a bench target.

Built once per state of the sources (`pip wheel`, ~75 s on 2 cores) and unpacked under the bench cache;
a target runs it by putting that directory first on PYTHONPATH, with servestack's dependencies from the
current environment — the same wheel `SERVESTACK_COMPILE=1 pip install .` installs.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from harness.venvs import venvs_root

REPO = Path(__file__).resolve().parents[2]


def sources_digest() -> str:
    digest = hashlib.sha256()
    build = [REPO / "setup.py", REPO / "pyproject.toml", REPO / "packaging" / "build_backend.py"]
    for path in sorted([*build, *(REPO / "src").rglob("*.py")]):
        digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def compiled_build() -> Path:
    """A directory holding the compiled build of the current sources (built now if it is not there yet)."""
    root = venvs_root() / "servestack-compiled"
    target = root / sources_digest()
    if (target / "servestack").is_dir():
        return target
    print(f"building servestack's compiled wheel into {target} (once per source state, ~1-2 min) …", file=sys.stderr)
    shutil.rmtree(root, ignore_errors=True)
    wheels = root / "wheel"
    env = {**os.environ, "SERVESTACK_COMPILE": "1"}
    argv = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(REPO)]
    subprocess.run(argv, check=True, env=env, stdout=subprocess.DEVNULL)
    (wheel,) = wheels.glob("servestack-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(target)
    return target
