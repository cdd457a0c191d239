"""The work behind `models` and `rm`: find the models (downloads/inventory.py), show, verify or remove one."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import orjson
import typer
from rich.table import Table

from servestack.cli.app import (
    choose_stack,
    console,
    engine_environ,
    identifier_column,
    print_table,
    settings,
    styled,
)
from servestack.cli.survey import resolve_models
from servestack.controller.client import instance_running, remove_model
from servestack.downloads import format_bytes
from servestack.downloads.hf_environment import HfEnvironment
from servestack.downloads.inventory import LocalModel, ServiceModel, find_models
from servestack.downloads.records import RecordStore, checksums_dir
from servestack.downloads.removal import find_model
from servestack.downloads.removal import remove_model as remove_files
from servestack.downloads.verify import FileVerdict, Verdict, differing, verify_model
from servestack.errors import DownloadError


def local_models(stack_file: Path | None) -> tuple[list[LocalModel], RecordStore]:
    """Every model on this machine, with the services of the stack that use each."""
    stack, _ = choose_stack(stack_file)
    resolved, _ = resolve_models(stack)
    records = RecordStore(checksums_dir(settings()))
    found = find_models(
        hf_cache=HfEnvironment.from_environ(engine_environ(stack_file)).cache_dir,
        models_dir=settings().models_path,
        records=records,
        stack_models={name: ServiceModel(s.model, resolved[name]) for name, s in stack.services.items()},
    )
    return found, records


def show_models(name: str | None, stack_file: Path | None, *, verify: bool, as_json: bool) -> None:
    """`servestack models [MODEL] [--verify] [--json]`."""
    found, records = local_models(stack_file)
    if name is not None:
        found = [find_model(name, found)]
    if verify:
        _verify(found, records, as_json=as_json)
        return
    if as_json:
        typer.echo(orjson.dumps([_as_dict(m) for m in found], option=orjson.OPT_INDENT_2).decode())
        return
    if not found:
        console.print("no models on this machine yet: `servestack pull MODEL` fetches one")
        return
    table = Table(box=None, header_style="bold")
    identifier_column(table, "NAME", [m.name for m in found])
    identifier_column(table, "FORMAT", [m.format or "-" for m in found])
    identifier_column(table, "QUANT", [m.quant or "-" for m in found])
    identifier_column(table, "SIZE", [format_bytes(m.size) for m in found])
    identifier_column(table, "WHERE", [str(m.location) for m in found])  # a path cut short is of no use
    identifier_column(table, "USED BY", [", ".join(m.used_by) or "-" for m in found])
    for model in found:
        table.add_row(
            model.name,
            model.format or "-",
            model.quant or "-",
            format_bytes(model.size),
            str(model.location),
            ", ".join(model.used_by) or "-",
        )
    print_table(table)


def remove(name: str, stack_file: Path | None) -> None:
    """`servestack rm MODEL`: through the running instance when there is one (it knows what it runs)."""
    if instance_running(settings()):
        removed = remove_model(settings(), name)
        label, where, freed = str(removed["model"]), str(removed["location"]), int(removed["bytes"])
    else:
        found, records = local_models(stack_file)
        model = find_model(name, found)
        freed = remove_files(model, records)
        label, where = model.name, str(model.location)
        if model.used_by:
            console.print(f"note: {', '.join(model.used_by)} in the stack use it: pull it again before `up`")
    console.print(styled(("✓", "green"), f" removed {label} ({format_bytes(freed)}) from {where}"))


def _verify(found: list[LocalModel], records: RecordStore, *, as_json: bool) -> None:
    results = {model.name: verify_model(model, records) for model in found}
    if as_json:
        payload = {name: [_verdict_dict(v) for v in verdicts] for name, verdicts in results.items()}
        typer.echo(orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode())
    else:
        for name, verdicts in results.items():
            _print_verdicts(name, verdicts)
    bad = [v for verdicts in results.values() for v in differing(verdicts)]
    if bad:
        raise DownloadError(
            f"{len(bad)} file(s) differ from their recorded SHA-256: {', '.join(str(v.path) for v in bad)}",
            fix="remove the model (`servestack rm MODEL`) and pull it again",
        )


def _print_verdicts(name: str, verdicts: list[FileVerdict]) -> None:
    matching = sum(v.verdict is Verdict.MATCHES for v in verdicts)
    unknown = sum(v.verdict is Verdict.UNKNOWN for v in verdicts)
    bad = differing(verdicts)
    mark = ("✗", "red") if bad else ("✓", "green") if matching else ("?", "yellow")
    summary = f"{matching} of {len(verdicts)} file(s) match their recorded SHA-256"
    if unknown:
        summary += f"; {unknown} without a recorded checksum (not pulled by servestack)"
    console.print(styled(mark, " ", (name, "bold"), f": {summary}"))
    for verdict in bad:
        console.print(f"  {verdict.path}: SHA-256 {verdict.actual}, expected {verdict.expected} ({verdict.basis})")


def _as_dict(model: LocalModel) -> dict[str, object]:
    data = asdict(model)
    data.update(place=model.place.value, folder=str(model.folder), location=str(model.location))
    return data


def _verdict_dict(verdict: FileVerdict) -> dict[str, object]:
    return {**asdict(verdict), "path": str(verdict.path), "verdict": verdict.verdict.value}
