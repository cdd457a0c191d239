"""Reading an engine's `--help`: which values a flag accepts in the installed version.

Pure text in, facts out. argparse prints a flag with choices as `--flag {a,b,c}` (wrapped over
lines when long); clap prints `[possible values: a, b, c]`. Running `--help` is the supervisor's job
(`supervisor/preflight.py`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

_ARGPARSE_CHOICES = re.compile(r"(--[A-Za-z0-9][\w-]*)(?:,\s*--?[\w-]+)*\s+\{([^}]*)\}")
_CLAP_FLAG_LINE = re.compile(r"^\s*(?:-\w,\s*)?(--[A-Za-z0-9][\w-]*)")
_CLAP_CHOICES = re.compile(r"\[possible values: ([^\]]*)\]")


@dataclass(frozen=True)
class Rejection:
    """A flag value the installed engine does not accept."""

    flag: str
    value: str
    accepted: tuple[str, ...]


def parse_choices(help_text: str) -> dict[str, tuple[str, ...]]:
    """Flag → the values `--help` lists for it (only flags that list their choices)."""
    choices: dict[str, tuple[str, ...]] = {}
    for match in _ARGPARSE_CHOICES.finditer(help_text):
        choices.setdefault(match.group(1), _split(match.group(2), ","))
    current = None  # clap lists the values in the description under the flag's line
    for line in help_text.splitlines():
        flag_line = _CLAP_FLAG_LINE.match(line)
        if flag_line:
            current = flag_line.group(1)
        values = _CLAP_CHOICES.search(line)
        if values and current:
            choices.setdefault(current, _split(values.group(1), ","))
    return choices


def _split(text: str, sep: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.replace("\n", " ").split(sep) if item.strip())


def flag_values(argv: Sequence[str], flags: Iterable[str]) -> list[tuple[str, str]]:
    """(flag, value) for every occurrence of one of `flags` in `argv` (`--f v` and `--f=v`)."""
    wanted = set(flags)
    found = []
    for i, arg in enumerate(argv):
        name, eq, value = arg.partition("=")
        if name not in wanted:
            continue
        if eq:
            found.append((name, value))
        elif i + 1 < len(argv):
            found.append((name, argv[i + 1]))
    return found


def rejected_values(argv: Sequence[str], help_text: str, flags: Iterable[str]) -> list[Rejection]:
    """Values of `flags` in `argv` that the engine's `--help` does not list.

    A flag that `--help` shows without a list of choices accepts anything as far as we can tell.
    """
    choices = parse_choices(help_text)
    return [
        Rejection(name, value, choices[name])
        for name, value in flag_values(argv, flags)
        if name in choices and value not in choices[name]
    ]
