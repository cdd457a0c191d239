"""The work behind `plan`, and the planning step of `up`: facts are read here (GGUF / config.json /
safetensors headers, the HF cache, the catalog), the inventory comes from NVML, the stack's Ray cluster,
or `--gpus`, and this machine is looked at for what the stack needs of it (`cli/survey.py`) before
anything starts.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import orjson
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from servestack.cli.app import choose_stack, console, engine_environ, err_console, settings, styled
from servestack.cli.coresidency import print_residency
from servestack.cli.survey import Survey, resolve_models, survey_host
from servestack.cli.when import format_time
from servestack.engines import get_engine
from servestack.errors import ModelInfoError, PlanError, ServestackError
from servestack.gpus import GIB, Inventory, detect_inventory, parse_inventory
from servestack.modelinfo import Catalog, ModelFacts, find_facts, hf_cache_dir
from servestack.plan import (
    Finding,
    Fit,
    GpuMemory,
    Plan,
    ServicePlan,
    Severity,
    Verdict,
    explore_service,
    make_plan,
)
from servestack.plan.calibration import CalibrationRecord, predicted_of
from servestack.plan.export import explore_to_dict, plan_to_dict
from servestack.plan.measured import FIGURES, describe
from servestack.runtimes import container_name
from servestack.stack import Stack
from servestack.supervisor import free_port
from servestack.supervisor.launch import build_launch

VERDICT_STYLE = {
    Verdict.FITS: "green",
    Verdict.DOES_NOT_FIT: "red",
    Verdict.INVALID: "red",
    Verdict.CPU: "cyan",
    Verdict.UNCHECKED: "yellow",
}
SEVERITY_MARK = {Severity.ERROR: ("✗ error", "red"), Severity.WARNING: ("! warning", "yellow")}


def run_plan(
    file: Path | None, gpus: str | None, as_json: bool, explore: str | None, show_commands: bool, cuda: str | None
) -> None:
    """`servestack plan`: print the plan (or the TP exploration); exit 1 when it has errors."""
    stack, label = choose_stack(file)
    inventory = parse_inventory(gpus) if gpus else machine_inventory(stack)
    models, unresolved = resolve_models(stack)
    facts = gather_facts(stack, models)
    if explore is not None:
        _explore(stack, explore, inventory, facts, as_json)
        return
    host = survey_host(stack, unresolved, Survey.PLAN if gpus is None else Survey.ELSEWHERE)
    plan = make_plan(stack, inventory, facts, models=models, host=host)
    if as_json:
        typer.echo(orjson.dumps(plan_to_dict(plan), option=orjson.OPT_INDENT_2).decode())
    else:
        print_plan(console, plan, label)
    if show_commands:
        print_commands(plan, environ=engine_environ(file), driver_cuda=cuda or plan.inventory.cuda_driver_version)
    if plan.errors:
        raise typer.Exit(1)


def plan_for_up(stack: Stack, *, force: bool, inventory: Inventory | None = None) -> Plan:
    """The plan `up` runs: this machine's GPUs (NVML; none → CPU) or its cluster's, paths, engine ports and
    programs; errors refuse unless `force`, before any process starts (`up` binds the gateway's port itself)."""
    models, unresolved = resolve_models(stack)
    inventory = inventory if inventory is not None else machine_inventory(stack)
    host = survey_host(stack, unresolved, Survey.UP)
    plan = make_plan(stack, inventory, gather_facts(stack, models), models=models, host=host)
    if not plan.errors:
        return plan
    if force:
        print_findings(err_console, plan.errors, plan.stack)
        err_console.print("--force: starting despite these errors", style="yellow")
        return plan
    lines = [finding_line(f, plan.stack) + (f" — fix: {f.fix}" if f.fix else "") for f in plan.errors]
    raise PlanError(
        "the stack cannot run:\n  " + "\n  ".join(lines),
        fix="`servestack plan` explains each finding; `servestack up --force` starts anyway",
    )


def machine_inventory(stack: Stack) -> Inventory:
    """The GPUs the stack runs on: its Ray cluster's nodes (it stays joined: `up` runs on that connection),
    else this machine's."""
    if stack.cluster is None:
        return detect_inventory()
    from servestack.cluster import RayCluster

    with err_console.status(f"reading the Ray cluster at {stack.cluster.address}…"):
        return RayCluster.connect(stack.cluster).inventory()


def gather_facts(
    stack: Stack, models: Mapping[str, str], environ: Mapping[str, str] | None = None
) -> dict[str, ModelFacts]:
    """Facts for every service's model that can be found on disk, in the HF cache or in the catalog."""
    catalog = Catalog.builtin()
    cache = hf_cache_dir(os.environ if environ is None else environ)
    facts = {}
    for name in stack.services:
        try:
            found = find_facts(models[name], catalog=catalog, hf_cache=cache)
        except ModelInfoError as error:
            err_console.print(styled(("warning:", "yellow"), f" {name}: {error.message}"))
            continue
        if found is not None:
            facts[name] = found
    return facts


def print_plan(out: Console, plan: Plan, label: str) -> None:
    out.print(f"stack: {label}\nGPUs: {plan.inventory.describe()}", style="dim")
    for sp in plan.services.values():
        out.print()
        out.print(_service_table(sp, plan.inventory))
    print_residency(out, plan)
    findings = plan.all_findings()
    if findings:
        out.print()
        print_findings(out, findings, plan.stack)
    out.print()
    if plan.errors:
        out.print("the plan has errors: `up` refuses it", style="red")
    else:
        out.print("the plan is runnable", style="green")


def print_commands(plan: Plan, *, environ: Mapping[str, str], driver_cuda: str | None) -> None:
    """The process each service would start (its first replica), as a shell line (secrets masked)."""
    state_dir = settings().state_dir
    for sp in plan.services.values():
        console.print(styled("\n", (sp.name, "bold"), " ", ("command", "dim")))
        config = replace(sp.config, gpus=sp.gpus_of(0))
        config = config if config.port else replace(config, port=free_port(config.host))
        name = container_name(state_dir, sp.name, 0)
        try:
            launch = build_launch(sp.service, config, environ=environ, driver_cuda=driver_cuda, name=name)
        except ServestackError as error:
            console.print(styled("  ", ("cannot build it:", "red"), f" {error.message}"))
            if error.fix:
                console.print(f"  fix: {error.fix}")
            continue
        console.print(launch.display(), soft_wrap=True)
        if not sp.config.port:
            console.print(f"  (no port in the stack: a free one is chosen at start; {config.port} shown)", style="dim")


def finding_line(finding: Finding, stack: Stack) -> str:
    """`stack.yaml:7: services.chat.model: message` (or `service: message` when no one key is meant)."""
    where = _where(finding, stack)
    return f"{where}: {finding.message}" if where else finding.message


def print_findings(out: Console, findings: list[Finding], stack: Stack) -> None:
    for f in findings:
        where = _where(f, stack)
        located = styled((where, "bold"), ": ") if where else ""
        out.print(styled(SEVERITY_MARK[f.severity], " ") + located + f.message)
        if f.reason:
            out.print(styled("    ", ("why:", "dim"), f" {f.reason}"))
        if f.fix:
            out.print(styled("    ", ("fix:", "dim"), f" {f.fix}"))


def _where(finding: Finding, stack: Stack) -> str:
    return stack.locate(finding.key) if finding.key else finding.service or ""


def _service_table(sp: ServicePlan, inventory: Inventory) -> Table:
    style = VERDICT_STYLE[sp.verdict]
    title = styled((sp.name, "bold"), f" · {sp.service.engine} · {sp.service.model} · ", (sp.verdict.value, style))
    table = Table(title=title, title_justify="left", box=None, show_header=False, pad_edge=False)
    table.add_column(style="dim", no_wrap=True)
    table.add_column()
    memory = sp.memory
    if sp.facts is not None:
        table.add_row("model", _describe_facts(sp.facts))
    table.add_row("GPUs", _gpus_cell(sp, inventory))
    table.add_row("TP", str(sp.config.tp))
    if memory is not None:
        fraction = f", memory fraction {memory.fraction}" if memory.fraction is not None else ""
        table.add_row("per GPU", f"{_gib(memory.total)} total{fraction}")
        table.add_row("  weights", _gib(memory.weights))
        table.add_row("  KV cache", _gib(max(memory.kv, 0)))
        table.add_row("  overhead", f"{_gib(memory.overhead)} (CUDA context and working buffers)")
        table.add_row("  left free", _free_cell(memory))
        if memory.in_use:
            table.add_row("  in use", f"{_gib(memory.in_use)} (by other processes when planned)")
    elif sp.verdict is Verdict.CPU and sp.weights_bytes is not None:
        kv = (sp.kv_bytes_per_token or 0) * (sp.kv_tokens or 0)
        table.add_row("in RAM", f"weights {_gib(sp.weights_bytes)}, KV cache {_gib(kv)}")
    table.add_row("KV tokens", _count(sp.kv_tokens))
    if sp.calibration is not None:
        table.add_row("measured", _measured(sp, sp.calibration))
    table.add_row("context", _count(sp.config.context_length))
    table.add_row("full sequences", _count(sp.full_context_sequences))
    for decision in sp.decisions:
        table.add_row("decided", styled(decision.flag, (f" ({decision.reason})", "dim")))
    return table


def _measured(sp: ServicePlan, record: CalibrationRecord) -> Text:
    """What the engine allocated at its last start here with these settings, each figure against the plan."""
    compared = {c.figure: c for c in record.compare(predicted_of(sp))}
    parts: list[str | tuple[str, str]] = []
    for figure, label in FIGURES.items():
        allocated = getattr(record.allocated, figure)
        if allocated is None:
            continue
        c = compared.get(figure)
        against = f" ({c.change})" if c else " (not predicted)"
        parts += [
            ", " if parts else "",
            (f"{label} {describe(figure, allocated)}{against}", "yellow" if c and c.differs else ""),
        ]
    version = f" {record.engine_version}" if record.engine_version else ""
    engine = get_engine(sp.service.engine).display_name
    parts.append((f" — {engine}{version}, started {format_time(record.time)}", "dim"))
    return styled(*parts)


def _free_cell(memory: GpuMemory) -> str:
    if memory.free < 0:
        return f"none: {_gib(-memory.free)} short"
    use = f"; the engine's {memory.outside_claim} come out of it" if memory.outside_claim else ""
    return f"{_gib(memory.free)} (not claimed by this service{use})"


def _explore(stack: Stack, name: str, inventory: Inventory, facts: dict[str, ModelFacts], as_json: bool) -> None:
    service = stack.services.get(name)
    if service is None:
        raise PlanError(f"no service {name!r} in the stack", fix=f"services: {', '.join(stack.services)}")
    fits = explore_service(name, service, facts.get(name), inventory)
    if as_json:
        typer.echo(orjson.dumps(explore_to_dict(name, fits), option=orjson.OPT_INDENT_2).decode())
        return
    console.print(f"{name}: {facts[name].model_id} on {service.engine}, GPUs: {inventory.describe()}", style="dim")
    console.print(_explore_table(fits))
    for fit in fits:
        console.print(styled(f"TP {fit.tp}: ", (fit.verdict.value, VERDICT_STYLE[fit.verdict]), f" — {fit.reason}"))


def _explore_table(fits: list[Fit]) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("TP", justify="right", no_wrap=True)
    table.add_column("GPUS", no_wrap=True)
    for column in ("WEIGHTS/GPU", "KV/GPU", "KV TOKENS", "CONTEXT", "FULL SEQS"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("VERDICT", no_wrap=True)
    for fit in fits:
        memory = fit.memory
        table.add_row(
            str(fit.tp),
            _gpu_span([g.index for g in fit.gpus]),
            _gib(memory.weights if memory else None),
            _gib(max(memory.kv, 0) if memory else None),
            _count(fit.kv_tokens if memory else None),
            _count(fit.context if memory else None),
            _count(fit.sequences if memory else None),
            styled((fit.verdict.value, VERDICT_STYLE[fit.verdict])),
        )
    return table


def _gpu_span(indices: list[int]) -> str:
    """`0-7` for consecutive GPUs, else `0,2,5`."""
    if len(indices) > 2 and indices == list(range(indices[0], indices[-1] + 1)):
        return f"{indices[0]}-{indices[-1]}"
    return ",".join(map(str, indices))


def _gpus_cell(sp: ServicePlan, inventory: Inventory) -> str:
    if sp.places:
        return "\n".join(f"#{i}: {_place_cell(sp, i, inventory)}" for i in range(len(sp.places)))
    if sp.replica_gpus:
        return "  ".join(f"#{i}: {','.join(map(str, block))}" for i, block in enumerate(sp.replica_gpus))
    if sp.config.gpus:
        return ",".join(map(str, sp.config.gpus))
    if sp.service.gpus:  # pinned but not placed: the findings say why
        return ",".join(map(str, sp.service.gpus)) + " (not placed)"
    return "cpu"


def _place_cell(sp: ServicePlan, replica: int, inventory: Inventory) -> str:
    """`node w1: GPUs 0,1 (2× H100-80GB, 79.6 GiB each)`; `any node: cpu`."""
    place = sp.places[replica]
    node = f"node {inventory.node_name(place.node)}" if place.node else "any node"
    if not place.gpus:
        return f"{node}: cpu"
    gpus = [g for i in (sp.replica_gpus[replica] if sp.replica_gpus else sp.config.gpus) if (g := inventory.gpu(i))]
    sizes = sorted({f"{g.name}, {_gib(g.total_bytes)}" for g in gpus})
    return f"{node}: GPUs {','.join(map(str, place.gpus))} ({len(gpus)}× {' / '.join(sizes)} each)"


def _describe_facts(facts: ModelFacts) -> str:
    kind = facts.quantization or facts.dtype
    moe = f", MoE {facts.moe.experts} experts" if facts.moe else ""
    return f"{facts.parameters / 1e9:.2f}B parameters, {kind}{moe}, from {facts.source.split(':')[0]}"


def _gib(value: int | None) -> str:
    if value is None:
        return "-"
    if value == 0:
        return "0 GiB"
    return f"{value / GIB:.1f} GiB" if abs(value) >= GIB else f"{value / 2**20:.0f} MiB"


def _count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"
