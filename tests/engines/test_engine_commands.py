"""Engine adapters as tables: argv from a service and config, refusals, readiness, metrics, versions, help."""

from __future__ import annotations

from typing import Any

import pytest

from servestack.engines import ENGINES, METRICS, EngineConfig, ProbeResult, Readiness, get_engine, parse_choices
from servestack.engines.helptext import Rejection, rejected_values
from servestack.errors import EngineError
from servestack.stack import NativeRuntime, Service

CONFIG = EngineConfig(model="org/model", served_names=("m",), host="127.0.0.1", port=9000)


def service(engine: str, **fields: Any) -> Service:
    return Service(engine=engine, model="org/model", **fields)  # type: ignore[arg-type]


def args_of(engine: str, config: EngineConfig = CONFIG, **fields: Any) -> list[str]:
    command = get_engine(engine).command(service(engine, **fields), config)
    return [command.entry, *command.args]


FULL = {
    "dtype": "bfloat16",
    "quantization": "fp8",
    "chat_template": "/t.jinja",
    "tool_call_parser": "hermes",
    "reasoning_parser": "qwen3",
    "trust_remote_code": True,
}
FULL_CONFIG = EngineConfig(
    model="org/model", served_names=("m", "alias"), host="0.0.0.0", port=9000, gpus=(0, 1), tp=2,
    context_length=4096, memory_fraction=0.8, metrics=True,
)  # fmt: skip


@pytest.mark.parametrize(
    ("engine", "config", "fields", "expected"),
    [
        pytest.param(
            "sglang", CONFIG, {},
            ["sglang.launch_server", "--model-path", "org/model", "--served-model-name", "m",
             "--host", "127.0.0.1", "--port", "9000", "--tp-size", "1"],
            id="sglang-minimal",
        ),
        pytest.param(
            "sglang", FULL_CONFIG, {**FULL, "args": ["--chunked-prefill-size", "4096"]},
            ["sglang.launch_server", "--model-path", "org/model", "--served-model-name", "m",
             "--host", "0.0.0.0", "--port", "9000", "--tp-size", "2", "--context-length", "4096",
             "--dtype", "bfloat16", "--quantization", "fp8", "--trust-remote-code", "--chat-template", "/t.jinja",
             "--tool-call-parser", "hermes", "--reasoning-parser", "qwen3", "--mem-fraction-static", "0.8",
             "--enable-metrics", "--chunked-prefill-size", "4096"],
            id="sglang-everything",
        ),
        pytest.param(
            "vllm", CONFIG, {},
            ["vllm", "serve", "org/model", "--served-model-name", "m", "--host", "127.0.0.1", "--port", "9000",
             "--tensor-parallel-size", "1"],
            id="vllm-serve",
        ),
        pytest.param(
            "vllm", FULL_CONFIG, {**FULL, "runtime": NativeRuntime(venv="/opt/vllm")},
            ["vllm.entrypoints.openai.api_server", "--model", "org/model", "--served-model-name", "m", "alias",
             "--host", "0.0.0.0", "--port", "9000", "--tensor-parallel-size", "2", "--max-model-len", "4096",
             "--gpu-memory-utilization", "0.8", "--dtype", "bfloat16", "--quantization", "fp8",
             "--trust-remote-code", "--chat-template", "/t.jinja", "--enable-auto-tool-choice",
             "--tool-call-parser", "hermes", "--reasoning-parser", "qwen3"],
            id="vllm-module-form-in-a-venv",
        ),
        pytest.param(
            "vllm", CONFIG, {"runtime": NativeRuntime(venv="/opt/vllm", binary="/opt/vllm/bin/vllm")},
            ["vllm", "serve", "org/model", "--served-model-name", "m", "--host", "127.0.0.1", "--port", "9000",
             "--tensor-parallel-size", "1"],
            id="vllm-binary-wins-over-venv",
        ),
        pytest.param(
            "mistralrs", CONFIG, {"dtype": "bfloat16", "quantization": "Q4K"},
            ["mistralrs", "serve", "--host", "127.0.0.1", "--port", "9000", "-m", "org/model",
             "--dtype", "bf16", "--isq", "Q4K"],
            id="mistralrs-serve",
        ),
        pytest.param(
            "mistralrs", EngineConfig(model="/m/x.gguf", served_names=("x",), port=1, context_length=8192), {},
            ["mistralrs", "serve", "--host", "127.0.0.1", "--port", "1", "-m", "/m", "--format", "gguf",
             "-f", "x.gguf", "--max-seq-len", "8192"],
            id="mistralrs-gguf",
        ),
        pytest.param(
            "mistralrs-server", CONFIG, {"args": ["--max-seqs", "8"]},
            ["mistralrs-server", "--serve-ip", "127.0.0.1", "--port", "9000", "--max-seqs", "8",
             "plain", "-m", "org/model"],
            id="mistralrs-server-plain",
        ),
        pytest.param(
            "llama-server", EngineConfig(model="/m/x.gguf", served_names=("x",), port=1, gpus=(0,), context_length=2048,
                                         metrics=True),
            {"chat_template": "chatml"},
            ["llama-server", "-m", "/m/x.gguf", "--alias", "x", "--host", "127.0.0.1", "--port", "1", "-ngl", "999",
             "-c", "2048", "--chat-template", "chatml", "--metrics"],
            id="llama-server",
        ),
        pytest.param(
            "llamacpp", EngineConfig(model="/m/x.gguf", served_names=("x",), port=1, context_length=2048), {},
            ["llama_cpp.server", "--model", "/m/x.gguf", "--model_alias", "x", "--host", "127.0.0.1", "--port", "1",
             "--n_gpu_layers", "0", "--interrupt_requests", "False", "--n_ctx", "2048"],
            id="llama-cpp-python",
        ),
    ],
)  # fmt: skip
def test_command(engine: str, config: EngineConfig, fields: dict[str, Any], expected: list[str]) -> None:
    assert args_of(engine, config, **fields) == expected


@pytest.mark.parametrize(
    ("engine", "env_name"),
    [("sglang", None), ("vllm", "VLLM_API_KEY"), ("llama-server", "LLAMA_API_KEY"), ("llamacpp", "API_KEY")],
)
def test_api_key_stays_out_of_argv_where_the_engine_reads_it_from_env(engine: str, env_name: str | None) -> None:
    command = get_engine(engine).command(service(engine, api_key="sk-1"), CONFIG)
    if env_name is None:  # SGLang has only a flag; Launch.display() masks it
        assert command.args[command.args.index("--api-key") + 1] == "sk-1"
    else:
        assert command.env == {env_name: "sk-1"}
        assert "sk-1" not in command.args


@pytest.mark.parametrize(
    ("engine", "config", "fields", "message"),
    [
        ("mistralrs", CONFIG, {"tool_call_parser": "x", "api_key": "k"}, "no setting for: tool_call_parser, api_key"),
        ("mistralrs-server", CONFIG, {"dtype": "bfloat16"}, "no setting for: dtype"),
        (
            "mistralrs",
            EngineConfig(model="m", served_names=("m",), port=1, gpus=(0,), tp=2),
            {},
            "tp 2 needs exactly 2",
        ),
        ("llama-server", EngineConfig(model="m", served_names=("m",), port=1, tp=2), {}, "no setting for: tp"),
        ("llama-server", CONFIG, {"reasoning_parser": "deepseek"}, "no setting for: reasoning_parser"),
        ("llamacpp", EngineConfig(model="m", served_names=("m",), port=1, tp=2), {}, "no tensor parallelism"),
        ("llamacpp", CONFIG, {"dtype": "float16"}, "no setting for: dtype"),
        ("sglang", EngineConfig(model="m", served_names=("m",)), {}, "port must be chosen"),
    ],
)
def test_settings_an_engine_cannot_honour_are_refused(
    engine: str, config: EngineConfig, fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(EngineError, match=message):
        get_engine(engine).command(service(engine, **fields), config)


L, R, F = Readiness.LOADING, Readiness.READY, Readiness.FAILED


@pytest.mark.parametrize(
    ("engine", "statuses"),
    [
        # refused while loading, 503 while warming up, then 200 (engines.md §1.1)
        ("sglang", {None: L, 503: L, 200: R, 500: F}),
        # refused while loading, no 503 phase: 503 means the engine died (§1.2)
        ("vllm", {None: L, 200: R, 503: F}),
        ("mistralrs", {None: L, 200: R, 404: F}),
        ("mistralrs-server", {None: L, 200: R}),
        # the HTTP server is up before the model: 503 "Loading model" (§1.4)
        ("llama-server", {None: L, 503: L, 200: R, 500: F}),
        ("llamacpp", {None: L, 200: R}),
    ],
)
def test_readiness(engine: str, statuses: dict[int | None, Readiness]) -> None:
    for status, expected in statuses.items():
        assert get_engine(engine).readiness(ProbeResult(status=status)) is expected, status


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_metric_names_map_common_names(engine: str) -> None:
    adapter = ENGINES[engine]
    assert set(adapter.metric_names) <= set(METRICS)
    assert adapter.metrics_path is not None or not adapter.metric_names


@pytest.mark.parametrize(
    ("engine", "output", "version"),
    [
        ("sglang", "0.5.7\n", "0.5.7"),
        ("vllm", "INFO 11-22 [__init__.py:1] Automatically detected platform cpu.\n0.32.0\n", "0.32.0"),
        ("mistralrs-server", "mistralrs-server 0.6.0\n", "0.6.0"),
        (
            "llama-server",
            "version: 10021 (33a75f41)\nbuilt with cc (GCC) 13.2.0 for x86_64-linux-gnu\n",
            "b10021-33a75f41",
        ),
        ("llamacpp", "0.3.36\n", "0.3.36"),
        ("sglang", "Traceback (most recent call last):\nModuleNotFoundError: No module named 'sglang'\n", None),
    ],
)
def test_parse_version(engine: str, output: str, version: str | None) -> None:
    assert get_engine(engine).parse_version(output) == version


SGLANG_2025_HELP = """usage: launch_server.py [-h] --model-path MODEL_PATH [--tp-size TP_SIZE]
  --tool-call-parser {deepseekv3,deepseekv31,glm,glm45,gpt-oss,kimi_k2,llama3,
                      mistral,pythonic,qwen,qwen25,qwen3_coder,step3}
                        Specify the parser for handling tool-call interactions.
  --reasoning-parser {deepseek-r1,deepseek-v3,glm45,gpt-oss,kimi,qwen3,qwen3-thinking,step3}
"""
CLAP_HELP = """Options:
      --dtype <DTYPE>
          Model data type [default: auto] [possible values: auto, bf16, f16, f32]
  -p, --port <PORT>
          Port to serve on
"""


def test_parse_choices_reads_argparse_and_clap_help() -> None:
    choices = parse_choices(SGLANG_2025_HELP + CLAP_HELP)
    assert choices["--tool-call-parser"][-1] == "step3" and "glm47" not in choices["--tool-call-parser"]
    assert choices["--reasoning-parser"][2] == "glm45"
    assert choices["--dtype"] == ("auto", "bf16", "f16", "f32")
    assert "--port" not in choices


@pytest.mark.parametrize(
    ("argv", "rejected"),
    [
        (["--tool-call-parser", "glm47", "--reasoning-parser", "glm45"], ["glm47"]),
        (["--tool-call-parser=glm47"], ["glm47"]),
        (["--tool-call-parser", "glm45"], []),
        (["--tp-size", "8"], []),
    ],
)
def test_rejected_values(argv: list[str], rejected: list[str]) -> None:
    found = rejected_values(argv, SGLANG_2025_HELP, ["--tool-call-parser", "--reasoning-parser"])
    assert [r.value for r in found] == rejected
    assert all(isinstance(r, Rejection) and "glm45" in r.accepted for r in found)


SETTINGS_MATRIX = [
    ({}, CONFIG),
    ({}, EngineConfig(model="m", served_names=("m",), port=1, gpus=(0, 1), tp=2)),
    ({}, EngineConfig(model="m", served_names=("m",), port=1, gpus=(0,), tp=2)),
    ({}, EngineConfig(model="m", served_names=("m",), port=1, memory_fraction=0.5, context_length=4096)),
    (FULL, CONFIG),
    ({"api_key": "k", "kv_cache_dtype": "fp8"}, CONFIG),
    ({"dtype": "float16", "tool_call_parser": "hermes"}, FULL_CONFIG),
]


@pytest.mark.parametrize("engine", sorted(ENGINES))
@pytest.mark.parametrize(("fields", "config"), SETTINGS_MATRIX)
def test_command_refuses_exactly_the_refusals_the_planner_reports(
    engine: str, fields: dict[str, Any], config: EngineConfig
) -> None:
    """`plan` turns `refusals` into findings; `command` (what `up` runs) must refuse nothing else."""
    adapter, svc = get_engine(engine), service(engine, **fields)
    refusals = adapter.refusals(svc, config)
    if not refusals:
        adapter.command(svc, config)
        return
    with pytest.raises(EngineError) as refused:
        adapter.command(svc, config)
    assert refused.value.message == refusals[0].message
    assert all(refusal.settings for refusal in refusals)  # each names the stack keys it is about
