"""Planner accuracy: real engine startup logs (tests/plan/corpus) replayed through the planner.

    python bench/planner_accuracy.py            # print docs/planner-accuracy.md
    python bench/planner_accuracy.py --write    # write it

Each case of the corpus becomes the stack a user would write for that set-up (`replay.yaml` beside the
cases says how, and every assumption's reason), planned on its GPUs with its model config and its engine
version. The plan's weights per GPU and KV cache are compared with what the engine logged, and its
verdict (fits / does not fit / invalid TP) with the log's. GPUStack's rule (weights × 1.2 + 2 GiB must
fit the GPU) is applied to the same weights for comparison. `tests/plan/test_corpus_replay.py` checks
the targets case by case and that the committed doc is what this script prints.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from servestack.engines import Unchecked, get_engine
from servestack.gpus import GIB, Gpu, Inventory, parse_inventory
from servestack.modelinfo import ModelFacts, facts_from_config
from servestack.plan import HostFacts, ServicePlan, Verdict, make_plan
from servestack.stack import parse_stack

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "plan" / "corpus"
DOC = ROOT / "docs" / "planner-accuracy.md"
MIB = 2**20
SERVICE = "case"

WEIGHTS_TOLERANCE = 0.05
KV_TOLERANCE = 0.10
ENGINES = {"vllm": "vllm", "sglang": "sglang", "llama.cpp": "llama-server", "llama-cpp-python": "llamacpp"}
# Findings that mean the engine would not start with these settings; so does the plan's reduced context for
# an engine that refuses a pool shorter than one sequence (given the model's full context, it would not start).
DOES_NOT_FIT = {"weights-do-not-fit", "kv-does-not-fit", "startup-refused", "context-does-not-fit"}
GPUSTACK_FACTOR, GPUSTACK_EXTRA = 1.2, 2 * GIB


@dataclass(frozen=True)
class Case:
    id: str
    data: dict[str, Any]  # the case file
    replay: dict[str, Any]  # its entry in replay.yaml

    @property
    def logged(self) -> dict[str, Any]:
        return dict(self.data["logged"])

    @property
    def title(self) -> str:
        gpu, model = self.data["gpu"], self.data["model"]["id"].split(" ")[0]
        return f"{self.data['engine']} · {model} · {gpu['count'] or '?'}x {gpu['name']}"


@dataclass(frozen=True)
class Figure:
    """One figure the engine logged and what the plan predicts for it."""

    unit: str  # "GiB" or "tokens"
    logged: float
    predicted: float
    tolerance: float

    @property
    def error(self) -> float:
        if self.logged == 0:
            return 0.0 if self.predicted == 0 else float("inf")
        return (self.predicted - self.logged) / abs(self.logged)

    @property
    def within(self) -> bool:
        return abs(self.error) <= self.tolerance


@dataclass(frozen=True)
class Replay:
    case: Case
    plan: ServicePlan | None  # None: skipped
    weights: Figure | None = None
    kv: Figure | None = None
    verdict: str | None = None  # the planner's
    gpustack: str | None = None  # GPUStack's rule's verdict
    gpustack_kv: float | None = None  # the KV GPUStack's rule would leave, in the KV figure's unit

    @property
    def logged_verdict(self) -> str | None:
        return self.case.replay.get("verdict")

    @property
    def not_modelled(self) -> dict[str, str]:
        return dict(self.case.replay.get("not_modelled") or {})


def load_cases(corpus: Path = CORPUS) -> list[Case]:
    replays = yaml.safe_load((corpus / "replay.yaml").read_text())
    cases = []
    for path in sorted((corpus / "cases").glob("*.yaml")):
        case_id = path.name[:3]
        cases.append(Case(case_id, yaml.safe_load(path.read_text()), replays[case_id]))
    return cases


def replay(case: Case) -> Replay:
    if "skip" in case.replay:
        return Replay(case, None)
    entry = case.replay
    inventory = _inventory(entry)
    service = dict(entry["stack"])
    if service["engine"] not in ("llamacpp", "llama-server") or len(inventory.gpus) > 1:
        service["gpus"] = list(range(len(inventory.gpus)))
    else:
        service["gpus"] = [0]
    stack = parse_stack(
        yaml.safe_dump({"version": 1, "services": {SERVICE: {"model": case.data["model"]["id"], **service}}}),
        source=f"corpus case {case.id}",
        environ={},
    )
    host = HostFacts(engine_versions={SERVICE: str(entry["version"])} if entry.get("version") else {})
    plan = make_plan(stack, inventory, {SERVICE: case_facts(case)}, host=host).services[SERVICE]
    planned = plan.memory.weights / GIB if plan.memory and "weights_gib" not in case.replay else None
    weights = _figure(_logged_weights(case), planned, "GiB")
    kv = _kv_figure(case, plan)
    gpustack, gpustack_kv = _gpustack(plan, kv)
    return Replay(case, plan, weights, kv, _verdict(plan), gpustack, gpustack_kv)


def case_facts(case: Case) -> ModelFacts:
    """The case's model config with replay.yaml's corrections, as the planner reads a config.json."""
    config = _merged(case.data["model"]["config"], case.replay.get("config") or {})
    facts = facts_from_config(config, model_id=case.data["model"]["id"], source=f"corpus case {case.id}")
    gguf = case.replay.get("gguf")
    if gguf:
        facts = dataclasses.replace(facts, dtype="gguf", quantization=gguf)
    if "weights_gib" in case.replay:  # the local files' headers, which the planner reads on that machine
        facts = dataclasses.replace(facts, weight_bytes=int(float(case.replay["weights_gib"]) * GIB))
    return facts


def _merged(config: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(config)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(merged.get(key), Mapping) and key != "quantization_config":
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = value
    return merged


def _inventory(entry: Mapping[str, Any]) -> Inventory:
    inventory = parse_inventory(str(entry["gpus"]))
    in_use = int(float(entry.get("in_use_gib", 0)) * GIB)
    if not in_use:
        return inventory
    gpus = tuple(Gpu(g.index, g.name, g.total_bytes, g.total_bytes - in_use) for g in inventory.gpus)
    return dataclasses.replace(inventory, gpus=gpus)


def _verdict(plan: ServicePlan) -> str:
    codes = {finding.code for finding in plan.findings}
    if "tp-invalid" in codes:
        return Verdict.INVALID.value
    memory = get_engine(plan.service.engine).memory
    refuses_short_pool = not isinstance(memory, Unchecked) and not memory.caps_context
    if codes & DOES_NOT_FIT or ("context-reduced" in codes and refuses_short_pool):
        return Verdict.DOES_NOT_FIT.value
    return plan.verdict.value


def _figure(logged: float | None, predicted: float | None, unit: str) -> Figure | None:
    if logged is None or predicted is None:
        return None
    tolerance = WEIGHTS_TOLERANCE if unit == "GiB" else KV_TOLERANCE
    return Figure(unit, logged, predicted, tolerance)


def _logged_weights(case: Case) -> float | None:
    logged = case.logged
    buffers = logged.get("llama_model_buffer_mib")
    if isinstance(buffers, Mapping):
        on_gpus = [mib for device, mib in buffers.items() if _is_gpu(device)]
        return max(on_gpus) * MIB / GIB if on_gpus else None
    value = logged.get("weights_gib_per_gpu")
    if value is None:
        value = (case.data.get("derived_checks") or {}).get("weights_gib_per_gpu")
    return _one(value, max)


def _kv_figure(case: Case, plan: ServicePlan) -> Figure | None:
    """KV tokens when the engine logged them (or its blocks), else the KV GiB per GPU."""
    logged, memory = case.logged, plan.memory
    tokens = logged.get("kv_tokens") or (case.data.get("derived_checks") or {}).get("kv_tokens")
    if tokens is None and logged.get("gpu_blocks") is not None and logged.get("block_size"):
        tokens = logged["gpu_blocks"] * logged["block_size"]
    if isinstance(tokens, int) and plan.kv_tokens is not None and not _is_llamacpp(case):
        return _figure(tokens, plan.kv_tokens, "tokens")
    gib = _logged_kv_gib(logged)
    return _figure(gib, memory.kv / GIB if memory else None, "GiB KV")


def _logged_kv_gib(logged: Mapping[str, Any]) -> float | None:
    buffers = logged.get("llama_kv_buffer_mib")
    if isinstance(buffers, Mapping):
        per_gpu: dict[str, float] = {}
        for device, mib in buffers.items():
            if _is_gpu(device):
                gpu = device.split("_")[0]
                per_gpu[gpu] = per_gpu.get(gpu, 0.0) + mib
        return max(per_gpu.values()) * MIB / GIB if per_gpu else None
    return _one(logged.get("kv_cache_gib_per_gpu"), min)  # the engine sizes every rank by the smallest


def _is_gpu(device: str) -> bool:
    """llama.cpp's buffer names: `CUDA0`, `CUDA0_swa`, `VRAM` are on a GPU; `CUDA_Host`, `CPU_Mapped` are not."""
    return device.startswith(("CUDA", "VRAM")) and "Host" not in device


def _is_llamacpp(case: Case) -> bool:
    return case.replay["stack"]["engine"] in ("llamacpp", "llama-server")


def _one(value: Any, pick: Any) -> float | None:
    if isinstance(value, Mapping):
        value = list(value.values())
    if isinstance(value, list):
        return float(pick(value)) if value else None
    return None if value is None else float(value)


def _gpustack(plan: ServicePlan, kv: Figure | None) -> tuple[str | None, float | None]:
    """GPUStack's rule on the plan's weights: (verdict, the KV it would leave in the KV figure's unit)."""
    memory = plan.memory
    if memory is None:
        return None, None
    need = memory.weights * GPUSTACK_FACTOR + GPUSTACK_EXTRA
    verdict = Verdict.FITS.value if need <= memory.total - memory.in_use else Verdict.DOES_NOT_FIT.value
    if kv is None or memory.fraction is None:  # llama.cpp allocates its context, not what is left
        return verdict, None
    left = max(0.0, memory.fraction * memory.total - need)
    if kv.unit == "tokens":
        return verdict, left // (plan.kv_bytes_per_token or 1)
    return verdict, left / GIB


def render(replays: list[Replay]) -> str:
    """docs/planner-accuracy.md."""
    lines = [
        "# Planner accuracy",
        "",
        "Generated by `python bench/planner_accuracy.py --write` from the corpus of real engine startup logs in",
        "`tests/plan/corpus/` (sources, model configs and flags per case; `replay.yaml` says how each case becomes",
        "a stack and states every assumption). `tests/plan/test_corpus_replay.py` checks that this file is what",
        "the script prints now, and the targets case by case.",
        "",
        f"Targets: weights per GPU within ±{WEIGHTS_TOLERANCE:.0%}, KV cache within ±{KV_TOLERANCE:.0%} of the",
        "engine's logged figure (KV tokens when the engine logs them, else KV GiB per GPU), and the verdict right.",
        "GPUStack's rule (weights × 1.2 + 2 GiB must fit the GPU) is applied to the planner's weights; the KV it",
        "would leave is the engine's fraction of the GPU minus that.",
        "",
        *_summary(replays),
        "",
        "| case | set-up | weights logged → planned | KV logged → planned | verdict logged / planned "
        "| GPUStack verdict, KV left |",
        "|---|---|---|---|---|---|",
        *(_row(r) for r in replays),
        "",
        "## Not modelled yet",
        "",
        *_not_modelled(replays),
        "",
    ]
    return "\n".join(lines)


def _summary(replays: list[Replay]) -> list[str]:
    weights = [r.weights for r in replays if r.weights]
    kv = [r.kv for r in replays if r.kv]
    judged = [r for r in replays if r.logged_verdict and r.verdict]
    gpustack = [r for r in judged if r.gpustack]
    skipped = sum(1 for r in replays if r.plan is None)
    right = sum(r.verdict == r.logged_verdict for r in judged)
    gpustack_right = sum(r.gpustack == r.logged_verdict for r in gpustack)
    gpustack_kv = sum(1 for r in replays if r.gpustack_kv is not None and r.kv is not None)
    return [
        f"Summary over {len(replays)} cases ({skipped} a stack cannot express yet):",
        "",
        f"- weights within ±{WEIGHTS_TOLERANCE:.0%}: {sum(f.within for f in weights)} of {len(weights)} that log them",
        f"- KV within ±{KV_TOLERANCE:.0%}: {sum(f.within for f in kv)} of {len(kv)} that log it",
        f"- verdicts right: {right} of {len(judged)} whose log shows one",
        f"- GPUStack's rule: verdict right in {gpustack_right} of {len(gpustack)}; "
        f"KV within ±{KV_TOLERANCE:.0%} in {_gpustack_kv_within(replays)} of {gpustack_kv}",
    ]


def _gpustack_kv_within(replays: list[Replay]) -> int:
    return sum(
        1
        for r in replays
        if r.kv is not None and r.gpustack_kv is not None and _error(r.kv.logged, r.gpustack_kv) <= KV_TOLERANCE
    )


def _error(logged: float, predicted: float) -> float:
    return abs(predicted - logged) / abs(logged) if logged else (0.0 if predicted == 0 else float("inf"))


def _row(r: Replay) -> str:
    setup = r.case.title.replace("|", "/")
    if r.plan is None:
        return f"| {r.case.id} | {setup} | - | - | {r.logged_verdict or '-'} / skipped | - |"
    verdict = f"{r.logged_verdict or '(not shown)'} / {r.verdict}" + ("" if _verdict_ok(r) else " ✗")
    kv_left = "-" if r.gpustack_kv is None or r.kv is None else _value(r.gpustack_kv, r.kv.unit)
    return (
        f"| {r.case.id} | {setup} | {_cell(r.weights)} | {_cell(r.kv)} | {verdict} | {r.gpustack or '-'}, {kv_left} |"
    )


def _verdict_ok(r: Replay) -> bool:
    return r.logged_verdict is None or r.verdict == r.logged_verdict


def _cell(figure: Figure | None) -> str:
    if figure is None:
        return "-"
    mark = "" if figure.within else " ✗"
    return f"{_value(figure.logged, figure.unit)} → {_value(figure.predicted, figure.unit)} ({figure.error:+.1%}){mark}"


def _value(value: float, unit: str) -> str:
    return f"{value:,.0f} tok" if unit == "tokens" else f"{value:.2f} GiB"


def _not_modelled(replays: list[Replay]) -> list[str]:
    lines = []
    for r in replays:
        if r.plan is None:
            lines.append(f"- {r.case.id} (skipped): {r.case.replay['skip']}")
        for figure, reason in r.not_modelled.items():
            lines.append(f"- {r.case.id} {figure}: {reason}")
    return lines or ["Nothing: every case is within the targets."]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"write {DOC.relative_to(ROOT)}")
    options = parser.parse_args()
    text = render([replay(case) for case in load_cases()])
    if options.write:
        DOC.write_text(text)
    else:
        print(text)


if __name__ == "__main__":
    main()
