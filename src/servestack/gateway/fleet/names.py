"""The names clients send as `model`, resolved once per request to the pool that serves them.

A name is a served name (one pool of the endpoint table), or an alias from the stack file's
`gateway.aliases` for one; Ollama's clients add `:latest` to names, which is accepted for any name
that does not itself end so. Every surface resolves here, before the request is admitted: a name
nobody serves is a 404 at once, and what admission, queues and metrics see is always a served name.
"""

from __future__ import annotations

from collections.abc import Mapping

from servestack.errors import ModelNotFound
from servestack.gateway.fleet.pool import Pool
from servestack.gateway.fleet.table import EndpointTable

LATEST = ":latest"


class Target:
    """Where a request goes: the pool of the served name, and the alias the client used for it (or None)."""

    __slots__ = ("alias", "pool")

    def __init__(self, pool: Pool, alias: str | None = None) -> None:  # not a dataclass: see Exchange
        self.pool = pool
        self.alias = alias


class ModelNames:
    def __init__(self, table: EndpointTable, aliases: Mapping[str, str] | None = None) -> None:
        self.table = table
        self.aliases = dict(aliases or {})

    def served(self, name: str) -> tuple[str, str | None]:
        """(the served name `name` stands for, the alias used or None); the served name may not exist."""
        if name.endswith(LATEST) and not self._known(name):
            name = name.removesuffix(LATEST)
        target = self.aliases.get(name)
        return (target, name) if target is not None else (name, None)

    def resolve(self, name: str) -> Target:
        """The pool serving `name` (an alias, `:latest` or not); raises ModelNotFound (404)."""
        served, alias = self.served(name)
        pool = self.table.find(served)
        if pool is None:
            raise ModelNotFound(f"The model '{name}' does not exist", param="model")
        return Target(pool, alias)

    def listed(self) -> list[str]:
        """Every name a client may use: the served names, then the aliases."""
        return [*self.table.models(), *self.aliases]

    def _known(self, name: str) -> bool:
        return name in self.aliases or self.table.find(name) is not None
