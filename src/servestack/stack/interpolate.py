"""`${VAR}` interpolation of a parsed stack file, compose-style.

`${VAR}` must be set (in the process environment or the `.env` beside the stack file, the process
winning); `${VAR:-default}` falls back when unset or empty; `$${` is a literal `${`.
Only string values are interpolated, never keys, so error paths stay meaningful.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from servestack.stack.source import KeyPath

_REFERENCE = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\{([^}]*)\}?")


class MissingVariable(Exception):
    """A `${VAR}` with no value and no default; `path` is where it was used."""

    def __init__(self, path: KeyPath, variable: str) -> None:
        super().__init__(variable)
        self.path = path
        self.variable = variable


class BadReference(Exception):
    """A `${...}` that is not a variable name."""

    def __init__(self, path: KeyPath, text: str) -> None:
        super().__init__(text)
        self.path = path
        self.text = text


def interpolate(data: Any, variables: Mapping[str, str], path: KeyPath = ()) -> Any:
    """Return a copy of `data` with every `${VAR}` in its string values replaced."""
    if isinstance(data, str):
        return _interpolate_string(data, variables, path)
    if isinstance(data, dict):
        return {key: interpolate(value, variables, (*path, key)) for key, value in data.items()}
    if isinstance(data, list):
        return [interpolate(item, variables, (*path, i)) for i, item in enumerate(data)]
    return data


def _interpolate_string(text: str, variables: Mapping[str, str], path: KeyPath) -> str:
    if "$" not in text:
        return text

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        name, default, bad = match.group(1), match.group(2), match.group(3)
        if name is None:
            raise BadReference(path, "${" + (bad or ""))
        value = variables.get(name)
        if default is not None and not value:
            return default
        if value is None:
            raise MissingVariable(path, name)
        return value

    return _REFERENCE.sub(replace, text)
