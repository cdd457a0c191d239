"""Engine adapters, one module per engine, listed in one registry."""

from servestack.engines.base import (
    METRICS,
    Engine,
    EngineCommand,
    EngineConfig,
    EngineFlags,
    Parallelism,
    ProbeResult,
    Readiness,
    Refusal,
    Unchecked,
)
from servestack.engines.helptext import Rejection, parse_choices, rejected_values
from servestack.engines.llamacpp import LlamaCppPythonEngine
from servestack.engines.llamacpp_server import LlamaServerEngine
from servestack.engines.mistralrs import MistralRsEngine, MistralRsServerEngine
from servestack.engines.sglang import SGLangEngine
from servestack.engines.sim import SimEngine
from servestack.engines.vllm import VllmEngine
from servestack.errors import EngineError

ENGINES: dict[str, Engine] = {
    "llamacpp": LlamaCppPythonEngine(),
    "llama-server": LlamaServerEngine(),
    "vllm": VllmEngine(),
    "sglang": SGLangEngine(),
    "mistralrs": MistralRsEngine(),
    "mistralrs-server": MistralRsServerEngine(),
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
    "METRICS",
    "Engine",
    "EngineCommand",
    "EngineConfig",
    "EngineFlags",
    "Parallelism",
    "ProbeResult",
    "Readiness",
    "Refusal",
    "Rejection",
    "Unchecked",
    "get_engine",
    "parse_choices",
    "rejected_values",
]
