"""Runtimes, readiness and the version/flag check as real subprocesses, with fake tools on PATH.

The supervisor starts SGLang (a fake that behaves like the real one: port refused while loading,
503 while warming up, argparse errors for unknown parsers) through pixi, Apptainer and Docker
stand-ins that record their argv and environment and then run the inner command.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import FakeTools

from servestack.engines import EngineConfig
from servestack.errors import EngineError, RuntimeUnavailable
from servestack.gpus.nvidia_smi import read_driver_cuda
from servestack.plan import ServicePlan
from servestack.runtimes import container_name
from servestack.settings import Settings
from servestack.stack import ApptainerRuntime, DockerRuntime, NativeRuntime, PixiEnvironment, Service
from servestack.supervisor import ReplicaStatus, StateStore, Supervisor, group_alive

GLM = {"tool_call_parser": "glm47", "reasoning_parser": "glm45", "trust_remote_code": True}
PIXI = NativeRuntime(pixi=PixiEnvironment(manifest="/p/pixi.toml", environments={"default": "12.6", "cu128": "12.8"}))


def plan_for(service: Service, gpus: tuple[int, ...] = (0, 1)) -> ServicePlan:
    config = EngineConfig(model=service.model, served_names=("glm",), gpus=gpus, tp=len(gpus) or 1)
    return ServicePlan(name="glm", service=service, config=config)


def supervisor(
    tmp_path: Path, fakes: FakeTools, cuda: str = "12.8", environ: dict[str, str] | None = None
) -> Supervisor:
    settings = Settings(home=tmp_path / "home", ready_timeout=30, stop_timeout=5)
    env = {**os.environ, "FAKE_CUDA_VERSION": cuda}

    def run(argv: object) -> str:
        return subprocess.run([str(fakes.bin / "nvidia-smi")], env=env, capture_output=True, text=True).stdout

    def driver_cuda() -> str | None:  # the real parser over the fake tool's output
        return read_driver_cuda(run)

    return Supervisor(StateStore(settings.state_dir), settings, environ=environ or {}, driver_cuda=driver_cuda)


async def start_then_stop(sup: Supervisor, plan: ServicePlan) -> None:
    async with sup:
        replica = sup.prepare(plan)
        await sup.start(replica)
        assert replica.state.status is ReplicaStatus.READY
        pgid = replica.process.pgid if replica.process else 0
        await sup.stop(replica)
        assert not group_alive(pgid)


def test_sglang_in_the_pixi_environment_the_driver_supports(tmp_path: Path, fake_tools: FakeTools) -> None:
    service = Service(engine="sglang", model="/w/GLM-4.7", **GLM, runtime=PIXI, env=fake_tools.env())
    sup = supervisor(tmp_path, fake_tools, cuda="12.8", environ={"HF_TOKEN": "hf_secret"})
    asyncio.run(start_then_stop(sup, plan_for(service)))

    pixi_calls = fake_tools.calls("pixi")
    assert [c["argv"][:5] for c in pixi_calls] == [
        ["run", "--manifest-path", "/p/pixi.toml", "--environment", "cu128"]
    ] * 2
    help_call, serve_call = fake_tools.calls("sglang")
    assert help_call["argv"] == ["--help"]
    assert serve_call["argv"][:2] == ["--model-path", "/w/GLM-4.7"]
    assert serve_call["env"]["FAKE_ENV_PIXI"] == "cu128"
    assert serve_call["env"]["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert serve_call["env"]["HF_TOKEN"] == serve_call["env"]["HUGGING_FACE_HUB_TOKEN"] == "hf_secret"
    answers = [c["status"] for c in fake_tools.calls("sglang-http")]
    assert 503 in answers and answers[-1] == 200  # probed while warming up, ready only on 200
    assert "hf_secret" not in (tmp_path / "home" / "logs" / "glm.0.log").read_text()


def test_sglang_too_old_for_glm47_is_refused_before_start(tmp_path: Path, fake_tools: FakeTools) -> None:
    service = Service(
        engine="sglang",
        model="/w/GLM-4.7",
        **GLM,
        runtime=NativeRuntime(python=sys.executable),
        env=fake_tools.env(FAKE_SGLANG_VERSION="0.5.2"),
    )
    sup = supervisor(tmp_path, fake_tools)

    async def scenario() -> ReplicaStatus:
        async with sup:
            replica = sup.prepare(plan_for(service))
            with pytest.raises(EngineError) as caught:
                await sup.start(replica)
            error = caught.value
            assert error.message.startswith("SGLang 0.5.2 does not accept --tool-call-parser 'glm47' (it accepts: ")
            assert error.fix is not None and error.fix.startswith("upgrade SGLang")
            return replica.state.status

    assert asyncio.run(scenario()) is ReplicaStatus.FAILED
    assert [c["argv"] for c in fake_tools.calls("sglang")] == [["--help"]]  # the server itself never ran


def test_old_sglang_itself_rejects_glm47_like_the_real_one(fake_tools: FakeTools) -> None:
    env = {**os.environ, **fake_tools.env(FAKE_SGLANG_VERSION="0.5.2")}
    done = subprocess.run(
        [sys.executable, "-m", "sglang.launch_server", "--model-path", "m", "--tool-call-parser", "glm47"],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "launch_server.py: error: argument --tool-call-parser: invalid choice: 'glm47'" in done.stderr


def test_no_pixi_environment_fits_an_old_driver(tmp_path: Path, fake_tools: FakeTools) -> None:
    service = Service(engine="sglang", model="/w/GLM-4.7", runtime=PIXI, env=fake_tools.env())
    sup = supervisor(tmp_path, fake_tools, cuda="12.4")
    with pytest.raises(RuntimeUnavailable, match=r"supports CUDA up to 12\.4"):
        sup.prepare(plan_for(service))


def test_sglang_in_apptainer_gets_binds_gpus_and_token(tmp_path: Path, fakes_on_path: FakeTools) -> None:
    fake_tools = fakes_on_path
    runtime = ApptainerRuntime(
        kind="apptainer", image="docker://lmsysorg/sglang:latest", sif=str(tmp_path / "sglang.sif"),
        model_cache=str(tmp_path / "hf"), binds=["/etc/ssl/certs:/etc/ssl/certs:ro"],
    )  # fmt: skip
    service = Service(engine="sglang", model="mistralai/Codestral-22B-v0.1", runtime=runtime, env=fake_tools.env())
    asyncio.run(
        start_then_stop(supervisor(tmp_path, fake_tools, environ={"HF_TOKEN": "hf_x"}), plan_for(service, (1,)))
    )

    (call,) = fake_tools.calls("apptainer")
    assert call["argv"][:4] == ["exec", "--nv", "--bind", f"{tmp_path / 'hf'}:/root/.cache/huggingface"]
    assert call["env"]["APPTAINERENV_HF_TOKEN"] == "hf_x"
    (serve,) = fake_tools.calls("sglang")
    assert serve["env"]["CUDA_VISIBLE_DEVICES"] == "1"
    assert serve["env"]["HUGGINGFACE_HUB_CACHE"] == "/root/.cache/huggingface"
    assert serve["env"]["HF_TOKEN"] == "hf_x"


def test_sglang_in_docker_sees_only_named_variables(tmp_path: Path, fakes_on_path: FakeTools) -> None:
    fake_tools = fakes_on_path
    runtime = DockerRuntime(kind="docker", image="lmsysorg/sglang:latest")
    service = Service(engine="sglang", model="org/m", runtime=runtime, env=fake_tools.env())
    asyncio.run(
        start_then_stop(supervisor(tmp_path, fake_tools, environ={"HF_TOKEN": "hf_x"}), plan_for(service, (0,)))
    )

    calls = fake_tools.calls("docker")
    (call,) = [c for c in calls if c["argv"][0] == "run"]
    name = call["argv"][call["argv"].index("--name") + 1]
    assert re.fullmatch(r"servestack-[0-9a-f]{8}-glm-0", name)
    # A leftover of the name is removed before the start; the container is stopped and removed by name.
    assert [c["argv"] for c in calls if c["argv"][0] != "run"] == [
        ["rm", "--force", name],
        ["container", "inspect", name],  # its name is free before `run`
        ["stop", "--time", "5", name],
        ["rm", "--force", name],
        ["container", "inspect", name],
    ]
    assert call["argv"][:5] == ["run", "--rm", "--init", "--name", name]
    assert call["argv"][call["argv"].index("SERVESTACK_ENGINE_OF") - 1] == "-e"  # the mark reaches the engine
    assert call["argv"][call["argv"].index("--gpus") + 1] == '"device=0"'
    assert "hf_x" not in call["argv"]
    (serve,) = fake_tools.calls("sglang")
    assert serve["env"]["HF_TOKEN"] == "hf_x"
    assert "CUDA_VISIBLE_DEVICES" not in serve["env"]  # --gpus chose the device; the container sees it as 0
    assert serve["argv"][serve["argv"].index("--host") + 1] == "0.0.0.0"


def test_pull_image_pulls_sif_and_docker_images(tmp_path: Path, fake_tools: FakeTools) -> None:
    stack = tmp_path / "stack.yaml"
    stack.write_text(
        "gateway: {port: 18000}\nservices:\n"
        "  a:\n    engine: sglang\n    model: org/m\n"
        "    runtime: {kind: apptainer, image: 'docker://lmsysorg/sglang:latest', sif: ./images/sglang.sif}\n"
        "  b:\n    engine: vllm\n    model: org/m\n    runtime: {kind: docker, image: 'vllm/vllm-openai:latest'}\n"
        "  c:\n    engine: llamacpp\n    model: /m.gguf\n"
        "  d:\n    engine: vllm\n    model: org/m\n    runtime: {kind: podman, image: 'vllm/vllm-openai:latest'}\n"
    )
    env = {**os.environ, "PATH": fake_tools.env()["PATH"], "FAKE_RECORD": str(fake_tools.record)}
    done = subprocess.run(
        [sys.executable, "-m", "servestack", "pull-image", "-f", str(stack)], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "images" / "sglang.sif").read_text() == "fake SIF\n"
    assert [c["argv"] for c in fake_tools.calls()] == [
        ["pull", str(tmp_path / "images" / "sglang.sif"), "docker://lmsysorg/sglang:latest"],
        ["pull", "vllm/vllm-openai:latest"],
        ["pull", "vllm/vllm-openai:latest"],
    ]
    assert [c["tool"] for c in fake_tools.calls()] == ["apptainer", "docker", "podman"]
    assert "c: nothing to pull (runs natively, no image)" in done.stdout


def test_plan_shows_the_container_name_and_mark_up_starts_with(home: Path) -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "002-mistral-7b-vllm-docker.yaml"
    env = {**os.environ, "COLUMNS": "400"}
    done = subprocess.run(
        [sys.executable, "-m", "servestack", "plan", "-f", str(example), "--gpus", "2xH100-80GB", "--show-commands"],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    name = container_name(home / "state", "mistral-7b", 0)  # what the supervisor names replica 0
    assert f"docker run --rm --init --name {name} " in done.stdout, done.stdout
    assert "-e SERVESTACK_ENGINE_OF " in done.stdout
