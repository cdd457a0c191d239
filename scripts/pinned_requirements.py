"""Print `name==version`, one a line, for every installed distribution a requirement needs.

    python scripts/pinned_requirements.py 'llama_cpp_python[server]' --skip llama-cpp-python

Read from the running interpreter's installed distributions (no resolution, no network), so an image
built from the list holds exactly the versions the tests ran with. `--skip NAME` leaves a distribution
and what only it needs out (installed some other way, or not needed).
"""

from __future__ import annotations

import argparse
import importlib.metadata as md

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name


def pinned(root: str, skip: set[str]) -> dict[str, str]:
    pins: dict[str, str] = {}
    seen: set[tuple[str, tuple[str, ...]]] = set()
    first = Requirement(root)
    todo = [(first.name, tuple(sorted(first.extras)))]
    while todo:
        name, extras = todo.pop()
        key = canonicalize_name(name)
        if key in skip and name != first.name or (key, extras) in seen:
            continue
        seen.add((key, extras))
        dist = md.distribution(name)
        pins[key] = dist.version
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in extras or ("",)):
                todo.append((req.name, tuple(sorted(req.extras))))
    return {k: v for k, v in pins.items() if k not in skip}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("requirement", help="a requirement with extras, e.g. 'servestack[otel]'")
    parser.add_argument("--skip", action="append", default=[], help="a distribution to leave out (repeatable)")
    args = parser.parse_args()
    skip = {canonicalize_name(name) for name in args.skip}
    for key, version in sorted(pinned(args.requirement, skip).items()):
        print(f"{key}=={version}")


if __name__ == "__main__":
    main()
