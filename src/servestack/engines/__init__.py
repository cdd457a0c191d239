"""Engine adapters, one module per engine, listed in one registry."""

from servestack.engines.base import (
    Engine,
    EngineCommand,
    EngineConfig,
    ProbeResult,
    Readiness,
)
from servestack.engines.llamacpp import LlamaCppPythonEngine
from servestack.engines.sim import SimEngine
from servestack.errors import EngineError

ENGINES: dict[str, Engine] = {
    "llamacpp": LlamaCppPythonEngine(),
    "sim": SimEngine(),
}


def get_engine(name: str) -> Engine:
    try:
        return ENGINES[name]
    except KeyError:
        known = ", ".join(sorted(ENGINES))
        raise EngineError(f"engine {name!r} is not built into this servestack yet (available: {known})") from None


__all__ = [
    "ENGINES",
    "Engine",
    "EngineCommand",
    "EngineConfig",
    "ProbeResult",
    "Readiness",
    "get_engine",
]
