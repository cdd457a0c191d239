"""Golden tests: every seed set-up (../shared/seeds/) as an example stack file, and the exact process it starts.

For each example: the full launch (runtime wrapper + engine argv + environment) is pinned exactly,
and the engine part is checked against the seed's own command as flag/value pairs (flag order and
alias spelling may differ; examples/README.md lists the differences and why).
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from servestack.cli.planning import gather_facts
from servestack.engines import EngineConfig
from servestack.gpus import parse_inventory
from servestack.plan import HostFacts, make_plan
from servestack.runtimes import Launch, container_name
from servestack.stack import Stack, load_stack
from servestack.supervisor.launch import build_launch

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
HOME = str(Path.home())
STATE_DIR = Path("/srv/servestack/state")  # names the containers
TOKEN = "hf_not_a_real_token"
ENVIRON = {"HUGGING_FACE_HUB_TOKEN": TOKEN}
TOKENS = {"HF_TOKEN": TOKEN, "HUGGING_FACE_HUB_TOKEN": TOKEN}
SGLANG_ALIASES = {"--tp": "--tp-size", "--tensor-parallel-size": "--tp-size", "--model": "--model-path"}


# The hardware each seed ran on, as a `--gpus` spec.
SEED_HARDWARE = {
    "000-codestral-sglang-apptainer.yaml": "4xH200",
    "001-deepseek-v2.5-sglang-apptainer.yaml": "4xH200",
    "002-mistral-7b-vllm-docker.yaml": "2xH100-80GB",
    "003-mistralrs-gguf-docker.yaml": "1xRTX4090",
    "004-glm-4.7-sglang-pixi.yaml": "8xH200",
}


def config_for(example: str, stack: Stack, name: str) -> EngineConfig:
    """What the planner decides for the example on its seed's hardware (what `plan --show-commands` prints).

    Planned as on the seed's own machine, where its model files, images and mounts exist: no host facts
    say otherwise (on this machine they are missing, and `plan` says so: tests/cli/test_plan_cli.py).
    """
    facts = gather_facts(stack, {n: s.model for n, s in stack.services.items()})
    plan = make_plan(stack, parse_inventory(SEED_HARDWARE[example]), facts, host=HostFacts())
    assert not plan.errors, plan.errors
    return plan.services[name].config


def launch_of(example: str, *, driver_cuda: str | None = None) -> Launch:
    stack = load_stack(EXAMPLES / example, environ=ENVIRON)
    (name,) = stack.services
    config = config_for(example, stack, name)
    replica = container_name(STATE_DIR, name, 0)
    return build_launch(stack.services[name], config, environ=ENVIRON, driver_cuda=driver_cuda, name=replica)


def options(argv: list[str], aliases: dict[str, str]) -> tuple[list[str], dict[str, str | None]]:
    """(positional words, {flag: value or None}) with aliases spelled one way."""
    words: list[str] = []
    flags: dict[str, str | None] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("-"):
            has_value = i + 1 < len(argv) and not argv[i + 1].startswith("--")
            flags[aliases.get(arg, arg)] = argv[i + 1] if has_value else None
            i += 2 if has_value else 1
        else:
            words.append(arg)
            i += 1
    return words, flags


# The seeds' own engine commands. 000 and 004 are written out in the seeds; 001-003 are assembled
# from the facts each seed states (model, port, TP, dtype, mount), marked "assembled".
# 001: assembled, in the style of 000 (same machine, same author).
SEED_000 = (
    "python3 -m sglang.launch_server --model-path mistralai/Codestral-22B-v0.1 --host 0.0.0.0 --port 30002"
    " --tp 1 --context-length 8192 --mem-fraction-static 0.6"
)
SEED_001 = (
    "python3 -m sglang.launch_server --model-path deepseek-ai/DeepSeek-V2.5-1210 --host 0.0.0.0 --port 30000 --tp 4"
)
SEED_002 = (  # assembled
    "vllm serve mistralai/Mistral-7B-Instruct-v0.1 --host 0.0.0.0 --port 8000 --tensor-parallel-size 2 --dtype bfloat16"
)
SEED_003 = (  # assembled: mistral.rs v0.6.0 server, GGUF loader, models mounted at /models
    "mistralrs-server --serve-ip 0.0.0.0 --port 11434 gguf -m /models -f mistral-7b-instruct-q4_k_m.gguf"
)
SEED_004 = (
    "python -m sglang.launch_server --model-path ./weights/GLM-4.7 --served-model-name glm-4.7 --tp-size 8"
    " --host 0.0.0.0 --port 30000 --trust-remote-code --tool-call-parser glm47 --reasoning-parser glm45"
    " --mem-fraction-static 0.9 --disable-cuda-graph-padding"
)

APPTAINER_BINDS = [
    "--bind", "/data/models/huggingface:/root/.cache/huggingface",
    "--bind", "/etc/ssl/certs:/etc/ssl/certs:ro",
    "--bind", "/etc/pki:/etc/pki:ro",
]  # fmt: skip

GOLDEN = {
    "000-codestral-sglang-apptainer.yaml": (
        [
            "apptainer", "exec", "--nv", *APPTAINER_BINDS, str(EXAMPLES.parent / "shared" / "sglang.sif"),
            "python3", "-m", "sglang.launch_server",
            "--model-path", "mistralai/Codestral-22B-v0.1", "--host", "0.0.0.0", "--port", "30002",
            "--tp-size", "1", "--context-length", "8192", "--mem-fraction-static", "0.6",
        ],
        {
            "APPTAINERENV_CUDA_VISIBLE_DEVICES": "1",
            "APPTAINERENV_HUGGINGFACE_HUB_CACHE": "/root/.cache/huggingface",
            "APPTAINERENV_PYTHONUNBUFFERED": "1",
            "APPTAINERENV_HF_TOKEN": TOKEN,
            "APPTAINERENV_HUGGING_FACE_HUB_TOKEN": TOKEN,
        },
    ),
    "001-deepseek-v2.5-sglang-apptainer.yaml": (
        [
            "apptainer", "exec", "--nv", *APPTAINER_BINDS, str(EXAMPLES / "sglang.sif"),
            "python3", "-m", "sglang.launch_server",
            "--model-path", "deepseek-ai/DeepSeek-V2.5-1210", "--host", "0.0.0.0", "--port", "30000",
            "--tp-size", "4",
        ],
        {
            "APPTAINERENV_CUDA_VISIBLE_DEVICES": "0,1,2,3",
            "APPTAINERENV_HUGGINGFACE_HUB_CACHE": "/root/.cache/huggingface",
            "APPTAINERENV_PYTHONUNBUFFERED": "1",
            "APPTAINERENV_HF_TOKEN": TOKEN,
            "APPTAINERENV_HUGGING_FACE_HUB_TOKEN": TOKEN,
        },
    ),
    "002-mistral-7b-vllm-docker.yaml": (
        [
            "docker", "run", "--rm", "--init", "--name", "servestack-74526720-mistral-7b-0",
            "--gpus", '"device=0,1"', "-p", "8000:8000", "--ipc=host",
            "-v", f"{HOME}/.cache/huggingface/hub:/root/.cache/huggingface",
            "-e", "HUGGINGFACE_HUB_CACHE", "-e", "PYTHONUNBUFFERED", "-e", "HF_TOKEN", "-e", "HUGGING_FACE_HUB_TOKEN",
            "-e", "SERVESTACK_ENGINE_OF",
            "--entrypoint", "vllm", "vllm/vllm-openai:latest",
            "serve", "mistralai/Mistral-7B-Instruct-v0.1", "--host", "0.0.0.0", "--port", "8000",
            "--tensor-parallel-size", "2", "--dtype", "bfloat16",
        ],
        {"HUGGINGFACE_HUB_CACHE": "/root/.cache/huggingface", "PYTHONUNBUFFERED": "1", **TOKENS},
    ),
    "003-mistralrs-gguf-docker.yaml": (
        [
            "docker", "run", "--rm", "--init", "--name", "servestack-74526720-mistral-7b-0",
            "--gpus", '"device=0"', "-p", "11434:11434", "--ipc=host",
            "-v", f"{EXAMPLES}/data/mistral-models:/models:ro",
            "-e", "PYTHONUNBUFFERED", "-e", "HF_TOKEN", "-e", "HUGGING_FACE_HUB_TOKEN", "-e", "RUST_LOG",
            "-e", "SERVESTACK_ENGINE_OF",
            "--memory", "64g", "--memory-reservation", "32g",
            "--entrypoint", "mistralrs-server", "mistralrs:v0.6.0-cuda12.2",
            "--serve-ip", "0.0.0.0", "--port", "11434",
            "gguf", "-m", "/models", "-f", "mistral-7b-instruct-q4_k_m.gguf",
        ],
        {"PYTHONUNBUFFERED": "1", **TOKENS, "RUST_LOG": "info"},
    ),
    "004-glm-4.7-sglang-pixi.yaml": (
        [
            "pixi", "run", "--manifest-path", f"{EXAMPLES}/sglang-infer/pixi.toml", "--environment", "cu128",
            "python", "-m", "sglang.launch_server",
            "--model-path", f"{EXAMPLES}/sglang-infer/weights/GLM-4.7", "--served-model-name", "glm-4.7",
            "--host", "0.0.0.0", "--port", "30000", "--tp-size", "8", "--trust-remote-code",
            "--tool-call-parser", "glm47", "--reasoning-parser", "glm45", "--mem-fraction-static", "0.9",
            "--disable-cuda-graph-padding",
        ],
        {"CUDA_VISIBLE_DEVICES": "0,1,2,3,4,5,6,7", **TOKENS},
    ),
}  # fmt: skip

GLM_WEIGHTS = "./weights/GLM-4.7"  # the seed runs from its pixi project folder
# example → (seed command, where the engine command starts in our argv, path rewrites seed ← ours)
SEEDS = {
    "000-codestral-sglang-apptainer.yaml": (SEED_000, "python3", {}),
    "001-deepseek-v2.5-sglang-apptainer.yaml": (SEED_001, "python3", {}),
    "002-mistral-7b-vllm-docker.yaml": (SEED_002, "vllm", {}),
    "003-mistralrs-gguf-docker.yaml": (SEED_003, "mistralrs-server", {}),
    "004-glm-4.7-sglang-pixi.yaml": (
        SEED_004,
        "python",
        {f"{EXAMPLES}/sglang-infer/weights/GLM-4.7": "./weights/GLM-4.7"},
    ),
}


def test_every_example_has_a_golden_command() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("0*.yaml")) == sorted(GOLDEN)  # the seeds: 000-004


@pytest.mark.parametrize("example", sorted(GOLDEN))
def test_example_launch_is_exactly_the_golden_one(example: str) -> None:
    argv, env = GOLDEN[example]
    launch = launch_of(example, driver_cuda="12.8")
    assert launch.argv == argv
    assert launch.env == env


@pytest.mark.parametrize("example", sorted(SEEDS))
def test_engine_command_matches_the_seeds_own(example: str) -> None:
    seed, engine_start, rewrites = SEEDS[example]
    argv = launch_of(example, driver_cuda="12.8").argv
    ours = [rewrites.get(a, a) for a in argv[len(argv) - argv[::-1].index(engine_start) - 1 :]]
    if "--entrypoint" in argv:  # docker puts the image between the entrypoint and its arguments
        ours = [ours[0], *ours[2:]]
    aliases = SGLANG_ALIASES if "sglang" in seed else {}
    assert options(ours, aliases) == options(shlex.split(seed), aliases)


@pytest.mark.parametrize(
    ("driver_cuda", "environment"), [("12.6", "default"), ("12.7", "default"), ("12.8", "cu128"), ("13.0", "cu128")]
)
def test_seed_004_runs_the_newest_environment_the_driver_supports(driver_cuda: str, environment: str) -> None:
    argv = launch_of("004-glm-4.7-sglang-pixi.yaml", driver_cuda=driver_cuda).argv
    assert argv[argv.index("--environment") + 1] == environment


def test_seed_tokens_are_never_displayed() -> None:
    for example in GOLDEN:
        assert TOKEN not in launch_of(example, driver_cuda="12.8").display()
