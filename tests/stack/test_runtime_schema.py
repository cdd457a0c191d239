"""Stack-file runtime sections (native / apptainer / docker, pixi CUDA environments) and engine-facing keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from servestack.errors import StackError
from servestack.stack import (
    ApptainerRuntime,
    ContainerRuntime,
    DockerRuntime,
    NativeRuntime,
    PodmanRuntime,
    load_stack,
    parse_stack,
    read_dotenv,
)
from servestack.stack.runtime_schema import RUNTIME_KINDS


def one_service(runtime: str, extra: str = "") -> str:
    return f"services:\n  s:\n    engine: sglang\n    model: org/m\n{extra}    runtime:\n{runtime}"


@pytest.mark.parametrize(
    ("runtime", "kind"),
    [
        ("      venv: /opt/v\n", NativeRuntime),
        ("      kind: native\n      conda: sgl\n", NativeRuntime),
        ("      kind: apptainer\n      image: /img/s.sif\n", ApptainerRuntime),
        ("      kind: docker\n      image: vllm/vllm-openai:latest\n", DockerRuntime),
        ("      kind: podman\n      image: vllm/vllm-openai:latest\n      network: host\n", PodmanRuntime),
    ],
)
def test_runtime_kind_selects_the_section(runtime: str, kind: type) -> None:
    stack = parse_stack(one_service(runtime), source="s.yaml", environ={})
    assert isinstance(stack.services["s"].runtime, kind)


def test_engine_facing_keys_load() -> None:
    extra = (
        "    dtype: bfloat16\n    quantization: fp8\n    chat_template: /t.jinja\n    tool_call_parser: glm47\n"
        "    reasoning_parser: glm45\n    trust_remote_code: true\n    api_key: ${KEY}\n"
    )
    service = parse_stack(one_service("      venv: /v\n", extra), source="s.yaml", environ={"KEY": "k"}).services["s"]
    assert (service.dtype, service.quantization, service.tool_call_parser, service.api_key) == (
        "bfloat16",
        "fp8",
        "glm47",
        "k",
    )
    assert service.trust_remote_code is True


ERRORS = {
    "typo-in-docker": (
        "      kind: docker\n      image: x\n      volumez: []\n",
        "s.yaml:8: services.s.runtime.volumez: unknown key (did you mean 'volumes'?)",
    ),
    "unknown-kind": (
        "      kind: lxc\n",
        "s.yaml:5: services.s.runtime: unknown kind 'lxc' (expected one of 'native', 'apptainer', 'docker', 'podman')",
    ),
    "two-environments": (
        "      venv: /v\n      conda: c\n",
        "give only one of 'python', 'venv', 'conda', 'pixi' (got venv, conda)",
    ),
    "typo-in-pixi": (
        "      pixi:\n        manifest: /p\n        environmnt: cu128\n",
        "services.s.runtime.pixi.environmnt: unknown key (did you mean 'environment'?)",
    ),
    "bad-cuda-version": (
        "      pixi:\n        manifest: /p\n        environments: {cu128: '12'}\n",
        "services.s.runtime.pixi.environments.cu128: String should match pattern",
    ),
    "sif-without-reference": (
        "      kind: apptainer\n      image: /a.sif\n      sif: /b.sif\n",
        "'image' must then be a docker:// reference",
    ),
}


@pytest.mark.parametrize(("runtime", "message"), ERRORS.values(), ids=ERRORS.keys())
def test_runtime_errors_name_the_key(runtime: str, message: str) -> None:
    with pytest.raises(StackError) as caught:
        parse_stack(one_service(runtime), source="s.yaml", environ={})
    assert message in caught.value.message


@pytest.mark.parametrize("kind", ["docker", "podman"])
def test_relative_runtime_paths_are_made_absolute_against_the_stack_file(tmp_path: Path, kind: str) -> None:
    (tmp_path / "stack.yaml").write_text(
        one_service(
            f"      kind: {kind}\n      image: img\n      model_cache: ./hf\n"
            "      volumes: ['./models:/models:ro', 'named-volume:/x']\n"
        )
        + "  t:\n    engine: sglang\n    model: org/m\n    runtime:\n      pixi: {manifest: ../p/pixi.toml}\n"
    )
    stack = load_stack(tmp_path / "stack.yaml", environ={})
    docker = stack.services["s"].runtime
    assert isinstance(docker, ContainerRuntime) and type(docker) is RUNTIME_KINDS[kind]
    assert docker.model_cache == str(tmp_path / "hf")
    assert docker.volumes == [f"{tmp_path}/models:/models:ro", "named-volume:/x"]
    pixi = stack.services["t"].runtime
    assert isinstance(pixi, NativeRuntime) and pixi.pixi is not None
    assert pixi.pixi.manifest == str(tmp_path.parent / "p" / "pixi.toml")


def test_read_dotenv_returns_values_without_touching_the_environment(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("HF_TOKEN=hf_from_dotenv\n")
    assert read_dotenv(tmp_path / "stack.yaml") == {"HF_TOKEN": "hf_from_dotenv"}
    assert read_dotenv(tmp_path / "sub" / "stack.yaml") == {}
