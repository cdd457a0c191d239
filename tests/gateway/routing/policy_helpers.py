"""Endpoints for policy unit tests, with their load set by hand."""

from __future__ import annotations

from servestack.gateway.fleet.endpoint import Endpoint, EngineLoad


def endpoint(name: str, in_flight: int = 0, waiting: float = 0.0) -> Endpoint:
    e = Endpoint(name, "svc", ("m",), f"http://{name}", ready=True)
    e.in_flight = in_flight
    e.vitals.load = EngineLoad(waiting=waiting)
    return e


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
