"""Per-model request defaults (a service's `defaults:`), applied to each request that omits them.

Applied per replica tried, before the request is conformed to the engine's dialect (attempt.py), on the
chat and completion routes (Ollama's translated requests included): a field the request leaves out, or
sends as null, takes the service's default; `max_tokens` counts as given when `max_completion_tokens`
is. A replica without defaults gets the request itself, so the client's bytes still go untouched.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from servestack.gateway.fleet.endpoint import NO_DEFAULTS
from servestack.gateway.fleet.table import EndpointTable
from servestack.gateway.openai.conform import CHAT, COMPLETIONS

DEFAULTED_PATHS = frozenset({CHAT, COMPLETIONS})
# Fields a request may give under another name: it then counts as given.
SYNONYMS = {"max_tokens": ("max_completion_tokens",)}
# Ollama's names for the defaults, as /api/show lists them (`num_predict` is Ollama's max_tokens).
OLLAMA_NAMES = {"max_tokens": "num_predict"}


def apply_defaults(request: dict[str, Any], defaults: Mapping[str, Any], path: str) -> dict[str, Any]:
    """`request` with the `defaults` it omits; `request` itself when it omits none (or has no defaults)."""
    if not defaults or path not in DEFAULTED_PATHS:
        return request
    missing = {
        name: value
        for name, value in defaults.items()
        if request.get(name) is None and all(request.get(other) is None for other in SYNONYMS.get(name, ()))
    }
    return {**request, **missing} if missing else request


def served_defaults(table: EndpointTable, served: str) -> Mapping[str, Any]:
    """The defaults of the service serving `served` (the first one, when several services share the name)."""
    return next((e.defaults for e in table.endpoints() if served in e.models and e.defaults), NO_DEFAULTS)


def ollama_parameters(defaults: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The defaults as Ollama's `parameters` lines (name, value); a list of stops is one line each."""
    lines = []
    for name, value in defaults.items():
        for one in value if isinstance(value, list) else [value]:
            lines.append((OLLAMA_NAMES.get(name, name), _ollama_value(one)))
    return lines


def _ollama_value(value: object) -> str:
    return f'"{value}"' if isinstance(value, str) else str(value)
