"""The work behind `bundle create` and `bundle load`: what to pack, progress bars, the summary."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from servestack.cli.app import console, engine_environ, err_console, settings, styled
from servestack.downloads import format_bytes
from servestack.downloads.bundle_create import collect, write_bundle
from servestack.downloads.bundle_load import load_bundle
from servestack.downloads.hf_environment import HfEnvironment
from servestack.downloads.records import RecordStore, checksums_dir
from servestack.engines import get_engine
from servestack.errors import StackError
from servestack.stack import load_stack


def create_bundle(stack_file: Path, out: Path, *, with_wheels: bool) -> None:
    """`servestack bundle create STACK -o FILE [--wheels]`."""
    if not stack_file.is_file():
        raise StackError(f"no stack file {stack_file}", fix="give the path of the stack file to bundle")
    stack = load_stack(stack_file)
    formats = {name: get_engine(s.engine).weight_formats for name, s in stack.services.items()}
    with tempfile.TemporaryDirectory(prefix="servestack-bundle-") as scratch:
        contents = collect(
            stack,
            stack_file,
            formats=formats,
            hf_cache=_hf_cache(stack_file),
            models_dir=settings().models_path,
            records=RecordStore(checksums_dir(settings())),
            wheels_dir=Path(scratch) if with_wheels else None,
        )
        for note in contents.notes:
            console.print(note, style="dim")
        with _bar(f"writing {out.name}", contents.total_bytes) as advance:
            write_bundle(contents, stack_file.read_bytes(), out, progress=advance)
    manifest = contents.manifest
    files = len(manifest.files())
    console.print(
        styled(
            ("✓", "green"),
            f" {out}: {len(manifest.models)} model(s), {len(manifest.venvs)} venv(s), {files} files, "
            f"{format_bytes(contents.total_bytes)} with their SHA-256",
        )
    )


def load_bundle_file(bundle: Path, directory: Path) -> None:
    """`servestack bundle load FILE [--dir DIR]`."""
    size = bundle.stat().st_size if bundle.is_file() else 0
    with _bar(f"loading {bundle.name}", size) as advance:
        loaded = load_bundle(
            bundle,
            stack_dir=directory.absolute(),
            hf_cache=_hf_cache(None),
            models_dir=settings().models_path,
            records=RecordStore(checksums_dir(settings())),
            progress=advance,
        )
    for model, folder in loaded.models:
        console.print(styled(("✓", "green"), " ", (model.model, "bold"), f" ({len(model.files)} files) → {folder}"))
    for venv, path, built in loaded.venvs:
        what = f"built from {len(venv.files)} wheels" if built else "already there, left alone"
        console.print(styled(("✓", "green"), f" venv {path}: {what}"))
    console.print(f"every file matched the bundle's SHA-256; run it: servestack up -f {loaded.stack_file}", style="dim")


def _hf_cache(stack_file: Path | None) -> Path:
    return HfEnvironment.from_environ(engine_environ(stack_file)).cache_dir


@contextmanager
def _bar(label: str, total: int) -> Iterator[Callable[[int], None]]:
    """One byte progress bar on stderr; yields the function that advances it."""
    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), console=err_console
    )
    task = progress.add_task(label, total=total or None)
    with progress:
        yield lambda n: progress.advance(task, n)
