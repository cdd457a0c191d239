"""The `sim` engine adapter: its command line, readiness, and metric names that the simulator really serves."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from servestack.engines import ENGINES, EngineConfig, ProbeResult, Readiness, get_engine
from servestack.sim import SimConfig, SimServer
from servestack.stack import Service


def test_registered_under_sim() -> None:
    assert get_engine("sim") is ENGINES["sim"]
    assert get_engine("sim").health_path == "/health"
    assert get_engine("sim").metrics_path == "/metrics"


@pytest.mark.parametrize(
    ("config", "args", "expected"),
    [
        (
            EngineConfig(model="sim", served_names=("chat",), port=9001),
            [],
            ["--host", "127.0.0.1", "--port", "9001", "--root", "sim", "--model", "chat"],
        ),
        (
            EngineConfig(model="Qwen/Qwen2.5-7B", served_names=("a", "b"), host="0.0.0.0", port=9002,
                         context_length=4096, gpus=(0, 1), tp=2, memory_fraction=0.8),
            ["--decode-rate", "30", "--error-rate", "0.1"],
            ["--host", "0.0.0.0", "--port", "9002", "--root", "Qwen/Qwen2.5-7B", "--model", "a", "--model", "b",
             "--max-model-len", "4096", "--decode-rate", "30", "--error-rate", "0.1"],
        ),
    ],
)  # fmt: skip
def test_command(config: EngineConfig, args: list[str], expected: list[str]) -> None:
    service = Service(engine="sim", model=config.model, args=args)
    command = get_engine("sim").command(service, config)
    assert (command.kind, command.entry, command.args) == ("module", "servestack.sim", expected)


def test_command_needs_a_port() -> None:
    from servestack.errors import EngineError

    with pytest.raises(EngineError):
        get_engine("sim").command(Service(engine="sim", model="m"), EngineConfig(model="m", served_names=("m",)))


@pytest.mark.parametrize(
    ("status", "readiness"), [(None, Readiness.LOADING), (503, Readiness.LOADING), (200, Readiness.READY)]
)
def test_readiness(status: int | None, readiness: Readiness) -> None:
    assert get_engine("sim").readiness(ProbeResult(status=status)) is readiness


def test_every_mapped_metric_is_served() -> None:
    async def scrape() -> str:
        server = SimServer(SimConfig(port=0, instant=True))
        await server.start()
        try:
            async with httpx.AsyncClient() as http:
                return (await http.get(server.url + "/metrics")).text
        finally:
            await server.stop()

    text = asyncio.run(scrape())
    engine = get_engine("sim")
    assert {"waiting", "running", "kv_usage", "ttft", "prompt_tokens", "generation_tokens"} <= set(engine.metric_names)
    samples = {line.split("{")[0] for line in text.splitlines() if not line.startswith("#")}
    for name in engine.metric_names.values():
        assert name in samples or f"{name}_bucket" in samples, name
