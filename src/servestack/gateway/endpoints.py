"""What the gateway knows of the engines: endpoints by served model name, and which are ready.

The gateway never sees processes; the controller feeds this table from the supervisor.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from servestack.errors import ModelNotFound, UpstreamUnavailable


@dataclass
class Endpoint:
    """One engine replica as the gateway sees it."""

    id: str
    service: str
    models: tuple[str, ...]
    base_url: str
    ready: bool = False
    in_flight: int = 0
    engine: str = ""


@dataclass
class EndpointTable:
    _endpoints: dict[str, Endpoint] = field(default_factory=dict)
    _by_model: dict[str, list[Endpoint]] = field(default_factory=dict)

    def upsert(self, endpoint: Endpoint) -> None:
        """Add or replace the endpoint with `endpoint.id`."""
        self.remove(endpoint.id)
        self._endpoints[endpoint.id] = endpoint
        for model in endpoint.models:
            self._by_model.setdefault(model, []).append(endpoint)

    def remove(self, endpoint_id: str) -> None:
        old = self._endpoints.pop(endpoint_id, None)
        if old is None:
            return
        for model in old.models:
            pool = [e for e in self._by_model.get(model, []) if e.id != endpoint_id]
            if pool:
                self._by_model[model] = pool
            else:
                self._by_model.pop(model, None)

    def get(self, endpoint_id: str) -> Endpoint | None:
        return self._endpoints.get(endpoint_id)

    def pick(self, model: str) -> Endpoint:
        """A ready endpoint serving `model`: raises ModelNotFound (unknown) or UpstreamUnavailable (none ready)."""
        pool = self._by_model.get(model)
        if pool is None:
            raise ModelNotFound(f"The model '{model}' does not exist", param="model")
        ready = [e for e in pool if e.ready]
        if not ready:
            raise UpstreamUnavailable(
                f"The model '{model}' is not ready yet (its engine is loading or down)", retry_after=5
            )
        return min(ready, key=lambda e: e.in_flight)

    def models(self) -> list[str]:
        return list(self._by_model)

    def endpoints(self) -> list[Endpoint]:
        return list(self._endpoints.values())
