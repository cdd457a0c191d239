"""The engine simulator: vLLM's HTTP API in front of a latency model, a prefix cache and fault injection.

Modules, from the wire inwards:

    server      bind, slow start, uvicorn; `SimServer` (in-process) and `main` (the process)
    app         the ASGI routes (generation, models, health, metrics, state, faults)
    asgi        noticing disconnects (the rest of its ASGI plumbing is servestack.asgi, shared with the gateway)
    protocol    OpenAI request parsing, answers and SSE chunks
    generation  one request through the scheduler (or instantly)
    scheduler   continuous batching and the latency model, in simulated seconds
    radix       the prefix cache (radix tree, LRU eviction, token capacity)
    tokenizer   deterministic text → token ids; chat rendering
    clock       simulated time scaled to wall time
    faults      errors, hangs and crashes on purpose
    metrics     Prometheus metrics under vLLM's names
    config      SimConfig and the command line
"""

from servestack.sim.app import EnginePhase, SimApp
from servestack.sim.config import SimConfig, parse_args
from servestack.sim.faults import CRASH_EXIT_CODE
from servestack.sim.server import SimServer, main

__all__ = ["CRASH_EXIT_CODE", "EnginePhase", "SimApp", "SimConfig", "SimServer", "main", "parse_args"]
