"""Runtime wrappers as tables: native (PATH, python, venv, conda, pixi), Apptainer, Docker, podman; CUDA; secrets."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest

from servestack.engines import EngineCommand, EngineConfig
from servestack.errors import RuntimeUnavailable
from servestack.gpus.nvidia_smi import parse_cuda_version, parse_driver_version, read_driver_cuda
from servestack.runtimes import (
    Container,
    Launch,
    choose_environment,
    container_name,
    get_runtime,
    hub_token_env,
    masked_argv,
)
from servestack.runtimes.mounts import Mount, model_inside, parse_mount
from servestack.stack import ApptainerRuntime, DockerRuntime, NativeRuntime, PixiEnvironment, PodmanRuntime
from servestack.stack.runtime_schema import RUNTIME_KINDS

MODULE = EngineCommand(kind="module", entry="sglang.launch_server", args=["--port", "1"])
BINARY = EngineCommand(kind="binary", entry="llama-server", args=["--port", "1"])
SCRIPT = EngineCommand(kind="script", entry="print(1)", args=[])
CONFIG = EngineConfig(model="org/m", served_names=("m",), port=1, gpus=(2, 3))
PIXI = PixiEnvironment(manifest="/p/pixi.toml", environments={"default": "12.6", "cu128": "12.8"})


@pytest.mark.parametrize(
    ("spec", "command", "argv"),
    [
        (NativeRuntime(), MODULE, [sys.executable, "-m", "sglang.launch_server", "--port", "1"]),
        (NativeRuntime(), BINARY, ["llama-server", "--port", "1"]),
        (NativeRuntime(binary="/opt/ls"), BINARY, ["/opt/ls", "--port", "1"]),
        (NativeRuntime(python="/opt/py/bin/python3"), SCRIPT, ["/opt/py/bin/python3", "-c", "print(1)"]),
        (NativeRuntime(venv="/opt/v"), MODULE, ["/opt/v/bin/python", "-m", "sglang.launch_server", "--port", "1"]),
        (NativeRuntime(venv="/opt/v"), BINARY, ["/opt/v/bin/llama-server", "--port", "1"]),
        (
            NativeRuntime(conda="sgl"),
            MODULE,
            ["conda", "run", "-n", "sgl", "--no-capture-output", "python", "-m", "sglang.launch_server", "--port", "1"],
        ),
        (
            NativeRuntime(pixi=PixiEnvironment(manifest="/p", environment="cu126")),
            BINARY,
            ["pixi", "run", "--manifest-path", "/p", "--environment", "cu126", "llama-server", "--port", "1"],
        ),
        (
            NativeRuntime(pixi=PixiEnvironment(manifest="/p")),
            MODULE,
            ["pixi", "run", "--manifest-path", "/p", "python", "-m", "sglang.launch_server", "--port", "1"],
        ),
    ],
)
def test_native_argv(spec: NativeRuntime, command: EngineCommand, argv: list[str]) -> None:
    launch = get_runtime(spec).wrap(command, CONFIG, {"X": "1"})
    assert launch.argv == argv
    assert launch.env == {"CUDA_VISIBLE_DEVICES": "2,3", "X": "1"}


def test_native_without_gpus_hides_them_all() -> None:
    launch = get_runtime(NativeRuntime()).wrap(BINARY, EngineConfig(model="m", served_names=("m",), port=1), {})
    assert launch.env == {"CUDA_VISIBLE_DEVICES": ""}


@pytest.mark.parametrize(
    ("driver", "environments", "chosen"),
    [
        ("12.6", {"default": "12.6", "cu128": "12.8"}, "default"),
        ("12.8", {"default": "12.6", "cu128": "12.8"}, "cu128"),
        ("13.1", {"default": "12.6", "cu128": "12.8"}, "cu128"),
        ("12.10", {"cu129": "12.9", "cu1210": "12.10"}, "cu1210"),  # versions compare as numbers
    ],
)
def test_choose_environment(driver: str, environments: dict[str, str], chosen: str) -> None:
    assert choose_environment(driver, environments) == chosen


@pytest.mark.parametrize(
    ("driver", "message"),
    [
        ("12.4", "supports CUDA up to 12.4 (default needs CUDA 12.6, cu128 needs CUDA 12.8)"),
        (None, "no NVIDIA driver found"),
    ],
)
def test_choose_environment_explains_why_none_fits(driver: str | None, message: str) -> None:
    with pytest.raises(RuntimeUnavailable, match=message.replace("(", r"\(").replace(")", r"\)")):
        get_runtime(NativeRuntime(pixi=PIXI), driver_cuda=driver)


NVIDIA_SMI = """Sun Nov 22 03:00:00 2026
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 550.54.15              Driver Version: 550.54.15      CUDA Version: 12.4     |
|-----------------------------------------+------------------------+----------------------+
"""


@pytest.mark.parametrize(
    ("text", "cuda", "driver"),
    [
        (NVIDIA_SMI, "12.4", "550.54.15"),
        (
            "==============NVSMI LOG==============\nDriver Version : 580.65.06\nCUDA Version : 13.0\n",
            "13.0",
            "580.65.06",
        ),
        ("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.", None, None),
        ("", None, None),
    ],
)
def test_nvidia_smi_parsing(text: str, cuda: str | None, driver: str | None) -> None:
    assert parse_cuda_version(text) == cuda
    assert parse_driver_version(text) == driver


def test_read_driver_cuda_runs_nvidia_smi_through_the_given_runner() -> None:
    calls: list[list[str]] = []

    def runner(argv: Any) -> str:
        calls.append(list(argv))
        return NVIDIA_SMI

    assert read_driver_cuda(runner) == "12.4"
    assert calls == [["nvidia-smi"]]


def test_apptainer_binds_cache_certs_and_an_uncovered_local_model() -> None:
    spec = ApptainerRuntime(
        kind="apptainer",
        image="docker://lmsysorg/sglang:latest",
        sif="/img/sglang.sif",
        model_cache="/data/hf",
        binds=["/etc/ssl/certs:/etc/ssl/certs:ro"],
    )
    runtime = get_runtime(spec)
    config = EngineConfig(model="/models/m", served_names=("m",), port=1, gpus=(1,))
    assert runtime.inside(config) == config  # not covered by a bind: mounted at the same path
    launch = runtime.wrap(MODULE, config, {"HF_TOKEN": "t"})
    assert launch.argv == [
        "apptainer", "exec", "--nv",
        "--bind", "/data/hf:/root/.cache/huggingface",
        "--bind", "/etc/ssl/certs:/etc/ssl/certs:ro",
        "--bind", "/models/m:/models/m:ro",
        "/img/sglang.sif", "python3", "-m", "sglang.launch_server", "--port", "1",
    ]  # fmt: skip
    assert launch.env == {
        "APPTAINERENV_CUDA_VISIBLE_DEVICES": "1",
        "APPTAINERENV_HUGGINGFACE_HUB_CACHE": "/root/.cache/huggingface",
        "APPTAINERENV_PYTHONUNBUFFERED": "1",
        "APPTAINERENV_HF_TOKEN": "t",
    }


GPU_FLAGS = {
    "docker": ["--gpus", '"device=0,1"'],
    "podman": ["--device", "nvidia.com/gpu=0", "--device", "nvidia.com/gpu=1"],
}


@pytest.mark.parametrize("kind", ["docker", "podman"])
def test_container_publishes_on_the_service_interface_and_binds_everything_inside(kind: str) -> None:
    spec = RUNTIME_KINDS[kind].model_validate(
        {
            "kind": kind,
            "image": "img:1",
            "volumes": ["/srv/models:/models:ro"],
            "ipc": None,
            "options": ["--shm-size", "8g"],
        }
    )
    runtime = get_runtime(spec)
    config = EngineConfig(model="/srv/models/a.gguf", served_names=("a",), host="127.0.0.1", port=7, gpus=(0, 1))
    inside = runtime.inside(config)
    assert (inside.host, inside.model) == ("0.0.0.0", "/models/a.gguf")
    launch = runtime.wrap(BINARY, config, {"HF_TOKEN": "t"}, name="servestack-1234abcd-a-0", forward=("MARK",))
    assert launch.argv == [
        kind, "run", "--rm", "--init", "--name", "servestack-1234abcd-a-0", *GPU_FLAGS[kind], "-p", "127.0.0.1:7:7",
        "-v", "/srv/models:/models:ro", "-e", "PYTHONUNBUFFERED", "-e", "HF_TOKEN", "-e", "MARK",
        "--shm-size", "8g", "--entrypoint", "llama-server", "img:1", "--port", "1",
    ]  # fmt: skip
    assert "t" not in launch.argv and launch.env["HF_TOKEN"] == "t" and "MARK" not in launch.env
    assert launch.container == Container(kind, "servestack-1234abcd-a-0")


def test_host_network_binds_the_service_interface_and_publishes_nothing() -> None:
    runtime = get_runtime(PodmanRuntime(kind="podman", image="img:1", network="host", ipc=None))
    config = EngineConfig(model="m", served_names=("a",), host="127.0.0.1", port=7)
    assert runtime.inside(config).host == "127.0.0.1"
    launch = runtime.wrap(BINARY, config, {})
    assert launch.argv == [
        "podman", "run", "--rm", "--init", "--network", "host", "-e", "PYTHONUNBUFFERED",
        "--entrypoint", "llama-server", "img:1", "--port", "1",
    ]  # fmt: skip
    assert launch.container is None  # unnamed: nothing to stop by name


def test_container_probe_runs_without_ports_gpus_or_name() -> None:
    runtime = get_runtime(DockerRuntime(kind="docker", image="img:1", network="host"))
    launch = runtime.wrap_probe(SCRIPT, {}, forward=("MARK",))
    assert launch.argv == [
        "docker", "run", "--rm", "--init", "--network", "host", "-e", "MARK",
        "--entrypoint", "python3", "img:1", "-c", "print(1)",
    ]  # fmt: skip


def test_container_names_are_stable_per_replica_and_distinct_per_state_dir(tmp_path: Path) -> None:
    one, other = tmp_path / "a" / "state", tmp_path / "b" / "state"
    assert container_name(one, "chat", 0) == container_name(one, "chat", 0)
    assert re.fullmatch(r"servestack-[0-9a-f]{8}-chat-1", container_name(one, "chat", 1))
    assert len({container_name(one, "chat", 0), container_name(other, "chat", 0), container_name(one, "chat", 1)}) == 3


@pytest.mark.parametrize(
    ("text", "mount"),
    [
        ("/a", Mount("/a", "/a")),
        ("/a:/b", Mount("/a", "/b")),
        ("/a:/b:ro", Mount("/a", "/b", read_only=True)),
        ("/a:/b:rw", Mount("/a", "/b")),
    ],
)
def test_parse_mount(text: str, mount: Mount) -> None:
    assert parse_mount(text) == mount


@pytest.mark.parametrize(
    ("model", "inside"),
    [
        ("/data/models/x/y.gguf", "/models/x/y.gguf"),
        ("/data/models", "/models"),
        ("/data/models-2/z", "/data/models-2/z"),  # a sibling folder is not covered
        ("/data/models/deep/w", "/deep/w"),  # the deepest mount wins
        ("org/hub-id", "org/hub-id"),
    ],
)
def test_model_inside(model: str, inside: str) -> None:
    mounts = [Mount("/data/models", "/models"), Mount("/data/models/deep", "/deep")]
    assert model_inside(model, mounts) == inside


@pytest.mark.parametrize(
    ("sources", "expected"),
    [
        ([{}, {"HF_TOKEN": "a"}], {"HF_TOKEN": "a", "HUGGING_FACE_HUB_TOKEN": "a"}),
        ([{"HUGGING_FACE_HUB_TOKEN": "b"}, {"HF_TOKEN": "a"}], {"HF_TOKEN": "b", "HUGGING_FACE_HUB_TOKEN": "b"}),
        ([{"HF_TOKEN": ""}, {}], {}),
    ],
)
def test_hub_token_env(sources: list[dict[str, str]], expected: dict[str, str]) -> None:
    assert hub_token_env(*sources) == expected


@pytest.mark.parametrize(
    ("argv", "shown"),
    [
        (["x", "--api-key", "sk-1", "--port", "1"], ["x", "--api-key", "***", "--port", "1"]),
        (["x", "--api-key=sk-1"], ["x", "--api-key=***"]),
        (["x", "--hf-token", "hf_1"], ["x", "--hf-token", "***"]),
        (
            ["x", "--max-total-tokens", "9", "--tokenizer-path", "/t"],
            ["x", "--max-total-tokens", "9", "--tokenizer-path", "/t"],
        ),
        (["docker", "-e", "HF_TOKEN"], ["docker", "-e", "HF_TOKEN"]),
    ],
)
def test_masked_argv(argv: list[str], shown: list[str]) -> None:
    assert masked_argv(argv) == shown


def test_display_masks_secret_env_and_flags() -> None:
    launch = Launch(
        argv=["sglang", "--api-key", "sk-secret"],
        env={"APPTAINERENV_HF_TOKEN": "hf_secret", "VLLM_API_KEY": "k_secret", "CUDA_VISIBLE_DEVICES": "1"},
    )
    shown = launch.display()
    assert "secret" not in shown
    assert shown == "APPTAINERENV_HF_TOKEN=*** VLLM_API_KEY=*** CUDA_VISIBLE_DEVICES=1 sglang --api-key '***'"
