"""The work behind `pull`: which models a stack needs, downloading them with progress bars, the result."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import typer
from dotenv import dotenv_values
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from servestack.cli.app import DEFAULT_STACK_FILE, choose_stack, console, err_console, print_error, styled
from servestack.downloads import (
    ModelReference,
    PullResult,
    PullStatus,
    RemoteFile,
    format_bytes,
    looks_like_hub_reference,
    make_hub,
    parse_reference,
    pull_model,
)
from servestack.downloads.library import Library
from servestack.downloads.records import RecordStore, checksums_dir
from servestack.engines import get_engine
from servestack.errors import DownloadError, StackError
from servestack.settings import load_settings
from servestack.stack import Stack
from servestack.stack.models import PACKAGE_PREFIX, is_local_path


def pull_models(
    target: str | None, stack_file: Path | None, revision: str | None, include: list[str], directory: Path | None
) -> None:
    """`servestack pull`: download what `target` (or every service of the stack) needs; exit 1 if any failed."""
    path = stack_file if stack_file is not None or not DEFAULT_STACK_FILE.is_file() else DEFAULT_STACK_FILE
    references = _references(target, path)
    if len(references) > 1 and (directory or include or revision):
        raise DownloadError(
            "--dir, --include and --revision apply to one model, and this pull has "
            f"{len(references)}: {', '.join(map(str, references))}",
            fix="name the SERVICE or MODEL to pull",
        )
    if not references:
        console.print("nothing to download")
        return
    environ = _environ(path)
    settings = load_settings()
    records = RecordStore(checksums_dir(settings))
    failed = 0
    for reference in references:
        hub = make_hub(reference, environ=environ, models_dir=settings.models_path, local_dir=directory)
        where = hub.storage(reference.repo_id)
        console.print(styled((reference.label, "bold"), f" from {hub.name} → {where}"))
        try:
            progress = RichDownloadProgress(err_console)
            result = pull_model(reference, hub, revision=revision, include=include, progress=progress, records=records)
        except DownloadError as error:
            if len(references) == 1:
                raise
            print_error(error)
            failed += 1
            continue
        _print_result(result)
    if failed:
        raise typer.Exit(1)


def _references(target: str | None, stack_file: Path | None) -> list[ModelReference]:
    """The models to pull: the target's, or those of every service that names a hub model."""
    if target is not None and looks_like_hub_reference(target):
        return [parse_reference(target)]
    stack, label = choose_stack(stack_file)
    base = stack_file.parent if stack_file else Path.cwd()
    if target is not None:
        if target in stack.services:
            return _service_references(stack, [target], base)
        if Library.builtin().knows(target):
            return [parse_reference(target)]
        raise StackError(
            f"{target!r} is neither a service of {label} nor a model id",
            fix=f"services: {', '.join(stack.services)}; a model id looks like ORG/NAME or qwen2.5-coder:7b",
        )
    return _service_references(stack, list(stack.services), base)


def _service_references(stack: Stack, names: Sequence[str], base: Path) -> list[ModelReference]:
    references: list[ModelReference] = []
    for name in names:
        service = stack.services[name]
        formats = get_engine(service.engine).weight_formats
        if service.model.startswith(PACKAGE_PREFIX):
            _note(f"{name}: {service.model} ships in a Python package, nothing to download")
        elif is_local_path(service.model) or (base / service.model).exists():
            _note(f"{name}: {service.model} is a local path, nothing to download")
        elif not formats:
            _note(f"{name}: its engine ({service.engine}) loads no weights, nothing to download")
        elif (reference := parse_reference(service.model, formats)) not in references:
            references.append(reference)
    return references


def _environ(stack_file: Path | None) -> Mapping[str, str]:
    """The process environment over the `.env` beside the stack file (the same precedence as the stack loader)."""
    dotenv = stack_file.parent / ".env" if stack_file else Path(".env")
    values = {k: v for k, v in dotenv_values(dotenv).items() if v is not None} if dotenv.is_file() else {}
    return {**values, **os.environ}


def _print_result(result: PullResult) -> None:
    selection = result.selection
    console.print(f"  {selection.description}")
    for skipped in selection.skipped:
        _note(f"  skipped {skipped}")
    total = f"{len(selection.files)} files, {format_bytes(selection.total_bytes)}"
    at = f"@{result.commit[:12]}" if result.commit else ""
    got = f"{len(result.downloaded)} files ({format_bytes(result.downloaded_bytes)})"
    if result.status is PullStatus.DOWNLOADED and len(result.downloaded) == len(selection.files):
        what = f"downloaded {got}"
    elif result.status is PullStatus.DOWNLOADED:
        what = f"downloaded {got}, the rest was complete; {total}"
    elif result.status is PullStatus.COMPLETE:
        what = f"already complete, nothing to download; {total}"
    else:
        what = f"{result.hub} unreachable ({result.unreachable}); the local copy has {total}"
    if result.checked:
        what += f"; checked {len(result.checked)} files against the hub's checksums"
    console.print(styled(("✓", "green"), " ", (f"{result.reference}{at}", "bold"), f": {what} in {result.location}"))


def _note(text: str) -> None:
    console.print(text, style="dim")


class RichDownloadProgress:
    """A byte bar for the whole pull and one per file in flight (rich's Progress is thread-safe)."""

    def __init__(self, output: Console) -> None:
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=output,
        )
        self._overall: TaskID | None = None
        self._files: dict[str, TaskID] = {}

    def start(self, label: str, files: Sequence[RemoteFile], total_bytes: int) -> None:
        self._overall = self._progress.add_task(f"{label} ({len(files)} files)", total=total_bytes or None)
        self._progress.start()

    def file_started(self, path: str, size: int | None) -> None:
        if path not in self._files:
            self._files[path] = self._progress.add_task(f"  {path}", total=size)

    def advance(self, path: str, n: int) -> None:
        if path in self._files:
            self._progress.advance(self._files[path], n)
        if self._overall is not None:
            self._progress.advance(self._overall, n)

    def file_done(self, path: str) -> None:
        task = self._files.pop(path, None)
        if task is not None:
            self._progress.remove_task(task)

    def finish(self) -> None:
        self._progress.stop()
