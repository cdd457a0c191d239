"""What a memory rule reads from a service: the engine flags it passes in `args`, and the engine's version.

A user tunes an engine with its own flags (`--max-num-seqs 8`, `-ngl 30`, `--max-total-tokens 20480`);
those that change memory change the plan too. A version is the engine's release (`0.6.4`, `0.8.3rc2.dev224`)
or a llama.cpp build (`b5452`); None means the newest behaviour a rule knows.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from servestack.engines.helptext import flag_values

_RELEASE = re.compile(r"^v?b?(\d+(?:\.\d+)*)")


def option(args: Sequence[str], *names: str) -> str | None:
    """The value of the last of `names` in `args` (`--flag value` or `--flag=value`), None when absent."""
    found = flag_values(args, names)
    return found[-1][1] if found else None


def number(args: Sequence[str], *names: str) -> float | None:
    value = option(args, *names)
    try:
        return None if value is None else float(value)
    except ValueError:
        return None


def switch(args: Sequence[str], *names: str) -> bool:
    """Whether a boolean flag is given (`--enforce-eager`, `-fa`, `-fa on`)."""
    return any(arg.partition("=")[0] in names for arg in args)


def release(version: str | None) -> tuple[int, ...] | None:
    """`0.8.3rc2.dev224+g49c0` → (0, 8, 3); `b5452` → (5452,); None when unknown."""
    if version is None:
        return None
    match = _RELEASE.match(version.strip())
    return tuple(int(part) for part in match.group(1).split(".")) if match else None


def at_least(version: str | None, *minimum: int) -> bool:
    """Whether `version` is `minimum` or newer; an unknown version is taken as the newest."""
    parsed = release(version)
    return parsed is None or parsed >= minimum
