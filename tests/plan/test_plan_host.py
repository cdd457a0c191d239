"""What the stack needs of this machine, as findings that point at the stack file: local paths that do not
exist, ports that cannot be bound, GPUs that are not there, settings the engine would refuse at `up`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from plan_fixtures import LLAMA_8B, facts, one_service, stack

from servestack.gpus import parse_inventory
from servestack.plan import Finding, HostFacts, Plan, Severity, Unresolved, make_plan
from servestack.stack import Stack, load_stack, local_paths


def load(tmp_path: Path, text: str) -> Stack:
    path = tmp_path / "stack.yaml"
    path.write_text(text)
    return load_stack(path, environ={})


def errors(plan: Plan) -> list[Finding]:
    return [f for f in plan.all_findings() if f.severity is Severity.ERROR]


def where(plan: Plan, finding: Finding) -> str:
    return f"{plan.stack.locate(finding.key)}: {finding.message}"


MISSING_MODEL = "version: 1\nservices:\n  x:\n    engine: {engine}\n    model: ./missing.gguf\n{extra}"


@pytest.mark.parametrize(
    ("engine", "extra", "gpus"),
    [
        ("llamacpp", "", "cpu"),
        ("llama-server", "", "cpu"),
        ("vllm", "    gpus: [0]\n", "1xH100-80GB"),
        ("sglang", "    gpus: [0]\n", "1xH100-80GB"),
        ("mistralrs", "    gpus: [0]\n", "1xH100-80GB"),
        ("mistralrs-server", "    gpus: [0]\n", "1xH100-80GB"),
    ],
)
def test_a_missing_model_file_is_an_error_at_its_line_whatever_the_engine(
    tmp_path: Path, engine: str, extra: str, gpus: str
) -> None:
    stack = load(tmp_path, MISSING_MODEL.format(engine=engine, extra=extra))
    missing = str(tmp_path / "missing.gguf")
    plan = make_plan(stack, parse_inventory(gpus), host=HostFacts(missing_paths=frozenset({missing})))
    [error] = errors(plan)
    assert error.code == "path-missing" and error.key == ("services", "x", "model")
    assert where(plan, error) == (
        f"{tmp_path / 'stack.yaml'}:5: services.x.model: no such file './missing.gguf' (resolved: {missing})"
    )
    assert not [f for f in plan.all_findings() if f.code == "facts-unknown"]  # the error says it all


def test_which_models_are_local_paths(tmp_path: Path) -> None:
    text = "services:\n" + "".join(
        f"  s{i}:\n    engine: vllm\n    model: {model}\n"
        for i, model in enumerate(["org/model", "./m", "~/m", "/abs/m", "m.gguf", "package:p/f.gguf"])
    )
    paths = {local.key[1]: local.path for local in local_paths(load(tmp_path, text))}
    assert "s0" not in paths  # a hub id
    assert paths["s1"] == str(tmp_path / "m") and paths["s2"] == str(Path.home() / "m")
    assert (paths["s3"], paths["s4"], paths["s5"]) == ("/abs/m", "m.gguf", "package:p/f.gguf")


def test_an_unresolved_package_reference_says_why_and_how_to_fix(tmp_path: Path) -> None:
    stack = load(tmp_path, "services:\n  x:\n    engine: llamacpp\n    model: package:nope/m.gguf\n")
    why = Unresolved("model 'package:nope/m.gguf': the Python package 'nope' is not installed", "pip install nope")
    [error] = errors(make_plan(stack, host=HostFacts(unresolved={"package:nope/m.gguf": why})))
    assert (error.key, error.message, error.fix) == (("services", "x", "model"), why.problem, why.fix)


def test_runtime_paths_and_mounts_are_checked(tmp_path: Path) -> None:
    text = (
        "services:\n  x:\n    engine: sglang\n    model: org/m\n    chat_template: ./t.jinja\n"
        "    runtime:\n      kind: apptainer\n      image: docker://img\n      sif: ./img.sif\n"
        "      binds: [./data:/data:ro, /etc/ssl:/etc/ssl]\n"
    )
    stack = load(tmp_path, text)
    missing = frozenset({str(tmp_path / "t.jinja"), str(tmp_path / "img.sif"), str(tmp_path / "data")})
    found = {f.key[2:]: f for f in errors(make_plan(stack, host=HostFacts(missing_paths=missing)))}
    assert set(found) >= {("chat_template",), ("runtime", "sif"), ("runtime", "binds", 0)}
    assert found[("runtime", "sif")].fix == "`servestack pull-image x` writes it"
    assert found[("runtime", "binds", 0)].message == f"no such file or folder './data' (resolved: {tmp_path}/data)"


PORTS = "gateway:\n  port: 9000\nservices:\n  x:\n    engine: sim\n    model: m\n    port: 9001\n"


def test_a_busy_port_is_an_error_at_the_key_that_sets_it(tmp_path: Path) -> None:
    stack = load(tmp_path, PORTS + "    args: [--port, '9002']\n")
    busy = ("EADDRINUSE", "Address already in use")
    host = HostFacts(unbindable={("127.0.0.1", 9000): busy, ("127.0.0.1", 9001): busy, ("127.0.0.1", 9002): busy})
    plan = make_plan(stack, host=host)
    assert [where(plan, f) for f in errors(plan)] == [
        f"{tmp_path / 'stack.yaml'}:2: gateway.port: port 9000 on 127.0.0.1 is already in use",
        f"{tmp_path / 'stack.yaml'}:7: services.x.port: port 9001 on 127.0.0.1 is already in use",
        f"{tmp_path / 'stack.yaml'}:8: services.x.args: port 9002 on 127.0.0.1 is already in use",
    ]
    assert {f.code for f in errors(plan)} == {"port-busy"}
    assert "ss -ltnp 'sport = :9001'" in errors(plan)[1].fix


def test_an_address_of_another_machine_is_an_error(tmp_path: Path) -> None:
    stack = load(tmp_path, PORTS.replace("    port: 9001", "    host: 10.9.9.9\n    port: 9001"))
    host = HostFacts(unbindable={("10.9.9.9", 9001): ("EADDRNOTAVAIL", "Cannot assign requested address")})
    [error] = errors(make_plan(stack, host=host))
    assert (error.code, error.key) == ("address-unavailable", ("services", "x", "port"))
    assert error.message == "cannot listen on 10.9.9.9:9001: Cannot assign requested address"


@pytest.mark.parametrize(
    ("engine", "fields", "key", "message"),
    [
        ("llamacpp", {"tp": 2}, "tp", "has no tensor parallelism (tp: 2)"),
        ("llamacpp", {"memory_fraction": 0.5}, "memory_fraction", "has no GPU memory fraction"),
        ("llama-server", {"tp": 2}, "tp", "has no setting for: tp"),
        ("mistralrs-server", {"api_key": "k", "gpus": [0]}, "api_key", "no setting for: api_key"),
        ("mistralrs", {"tool_call_parser": "hermes", "gpus": [0]}, "tool_call_parser", "no setting for: tool_call"),
        ("vllm", {"tp": 2, "gpus": [0, 1], "kv_cache_dtype": "q8_0"}, None, None),
    ],
)
def test_plan_refuses_what_the_engine_would_refuse_at_up(
    engine: str, fields: dict[str, Any], key: str | None, message: str | None
) -> None:
    plan = make_plan(stack(one_service(engine, "org/model", **fields)), parse_inventory("2xH100-80GB"))
    refused = [f for f in errors(plan) if f.code == "setting-unsupported"]
    if key is None:
        assert refused == []
        return
    [error] = refused
    assert error.key == ("services", "svc", key) and message in error.message
    assert plan.stack.locate(error.key).startswith("<test>:")


def test_a_tp_the_planner_already_rejects_is_reported_once() -> None:
    parsed = stack(one_service("llamacpp", LLAMA_8B, tp=2, gpus=[0, 1]))
    plan = make_plan(parsed, parse_inventory("2xH100-80GB"), {"svc": facts(LLAMA_8B)})
    assert [f.code for f in errors(plan)] == ["tp-invalid"]


@pytest.mark.parametrize("engine", ["llama-server", "mistralrs-server"])
def test_pinned_gpus_must_exist_for_engines_that_take_tp_from_them_or_split_layers(engine: str) -> None:
    plan = make_plan(stack(one_service(engine, "org/model", gpus=[3])), parse_inventory("1xRTX4090"))
    [error] = errors(plan)
    assert (error.code, error.key, error.message) == (
        "gpu-missing",
        ("services", "svc", "gpus"),
        "GPU 3 does not exist",
    )


@pytest.mark.parametrize(
    ("template", "is_file"),
    [("./t.jinja", True), ("/etc/t.j2", True), ("chatml", False), ("{{ messages[0]['content'] }}/x", False)],
)
def test_a_chat_template_is_checked_only_when_it_names_a_file(tmp_path: Path, template: str, is_file: bool) -> None:
    text = f"services:\n  x:\n    engine: vllm\n    model: org/m\n    chat_template: {json.dumps(template)}\n"
    keys = [local.key for local in local_paths(load(tmp_path, text))]
    assert (("services", "x", "chat_template") in keys) is is_file
