"""The candidates a policy chooses from: the pool's ready endpoints in order, with a lookup by id.

A module of its own because the compiled build leaves it as Python (setup.py: mypyc compiles no
subclass of tuple); what runs per choice (sampler.py) is compiled.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from servestack.gateway.fleet.endpoint import Endpoint


class Candidates(tuple["Endpoint", ...]):
    """Endpoints in the pool's order, with `get(id)`; the pool keeps one for its ready set between changes.

    A tuple, so that indexing and iterating cost what they cost on a tuple (the request path does both).
    """

    _by_id: dict[str, Endpoint] | None = None  # built on the first lookup

    def by_id(self) -> dict[str, Endpoint]:
        if self._by_id is None:
            self._by_id = {e.id: e for e in self}
        return self._by_id

    def get(self, endpoint_id: str) -> Endpoint | None:
        return self.by_id().get(endpoint_id)

    def __repr__(self) -> str:
        return f"Candidates({[e.id for e in self]})"
