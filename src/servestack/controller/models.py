"""The running instance's model management: what the gateway's Ollama routes and `servestack rm` ask of it.

It implements the gateway's `ModelAdmin` seam with `downloads/` (pull with checksums, find and remove
models) and the plan (which model each service runs, its facts), and refuses to remove a model a
running service uses. Aliases `/api/copy` adds are kept in `<state dir>/aliases.json`, so they survive
a restart of the instance (those whose target the stack no longer serves are dropped then).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from servestack.downloads import PullStatus, RemoteFile, make_hub, parse_reference, pull_model
from servestack.downloads.hf_environment import HfEnvironment
from servestack.downloads.inventory import LocalModel, ServiceModel, find_models
from servestack.downloads.records import RecordStore, checksums_dir
from servestack.downloads.reference import ModelReference
from servestack.downloads.removal import find_model, remove_model
from servestack.engines import get_engine
from servestack.errors import (
    BadRequest,
    Conflict,
    DownloadError,
    ModelNotFound,
    ServestackError,
    StateError,
    UpstreamError,
)
from servestack.gateway.ollama.admin import ModelDetails, PullReport, PullUpdate
from servestack.plan import Plan, ServicePlan
from servestack.settings import Settings
from servestack.stack.models import model_format
from servestack.stack.paths import names_local_model

ALIASES_FILE = "aliases.json"
DTYPE_LEVELS = {"bfloat16": "BF16", "float16": "F16", "float32": "F32"}


class InstanceModels:
    """`running()` names the services that have a replica up (starting, ready, restarting, draining)."""

    def __init__(
        self, plan: Plan, settings: Settings, environ: Mapping[str, str], running: Callable[[], set[str]]
    ) -> None:
        self.plan = plan
        self.settings = settings
        self.environ = environ
        self.running = running
        self.records = RecordStore(checksums_dir(settings))

    async def pull(self, name: str, report: PullReport) -> None:
        for reference in self._references(name):
            await asyncio.to_thread(self._pull_one, reference, report)

    async def delete(self, name: str) -> None:
        try:
            model = find_model(name, await asyncio.to_thread(self._find_models))
        except DownloadError as error:
            raise ModelNotFound(_with_fix(error)) from None
        try:
            await self._remove(model)
        except StateError as error:  # a running service uses it
            raise Conflict(_with_fix(error)) from None
        except DownloadError as error:  # one it cannot remove (a Python package's)
            raise BadRequest(_with_fix(error)) from None

    async def remove(self, name: str) -> LocalModel:
        """Remove the model `name` means: DownloadError when none (or it cannot be removed), StateError while
        a running service uses it."""
        model = find_model(name, await asyncio.to_thread(self._find_models))
        await self._remove(model)
        return model

    async def _remove(self, model: LocalModel) -> None:
        users = sorted(s for s in self.running() if model.serves(self.plan.services[s].config.model))
        await asyncio.to_thread(remove_model, model, self.records, users=users)

    def details(self, served: str) -> ModelDetails | None:
        plan = next((sp for sp in self.plan.services.values() if served in sp.config.served_names), None)
        return _details(plan) if plan is not None else None

    def saved_aliases(self) -> Mapping[str, str]:
        try:
            saved = json.loads(self._aliases_path.read_text())
        except (OSError, ValueError):
            return {}
        served = {n for sp in self.plan.services.values() for n in sp.config.served_names}
        if not isinstance(saved, dict):
            return {}
        return {a: t for a, t in saved.items() if isinstance(t, str) and t in served and a not in served}

    def save_aliases(self, aliases: Mapping[str, str]) -> None:
        path = self._aliases_path
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        partial.write_text(json.dumps(dict(aliases), indent=1))
        partial.replace(path)

    @property
    def _aliases_path(self) -> Path:
        return self.settings.state_dir / ALIASES_FILE

    def _references(self, name: str) -> list[ModelReference]:
        """What pulling `name` fetches: a served name's service's model (none when it is local), else `name`."""
        plan = next((sp for sp in self.plan.services.values() if name in sp.config.served_names), None)
        if plan is not None:
            model, formats = plan.service.model, get_engine(plan.service.engine).weight_formats
            if names_local_model(model) or not formats or Path(model).exists():
                return []
            return [self._parse(model, formats)]
        return [self._parse(name, ("gguf", "safetensors"))]

    def _parse(self, name: str, formats: Sequence[str]) -> ModelReference:
        try:
            return parse_reference(name, formats)
        except DownloadError as error:
            raise BadRequest(_with_fix(error), param="model") from None

    def _pull_one(self, reference: ModelReference, report: PullReport) -> None:
        hub = make_hub(reference, environ=self.environ, models_dir=self.settings.models_path)
        try:
            result = pull_model(reference, hub, progress=OllamaProgress(report), records=self.records)
        except DownloadError as error:
            raise UpstreamError(_with_fix(error)) from None
        if result.status is PullStatus.LOCAL_COPY:
            report(PullUpdate(f"{result.hub} unreachable ({result.unreachable}): the local copy is complete"))

    def _find_models(self) -> list[LocalModel]:
        return find_models(
            hf_cache=HfEnvironment.from_environ(self.environ).cache_dir,
            models_dir=self.settings.models_path,
            records=self.records,
            stack_models={
                name: ServiceModel(sp.service.model, sp.config.model) for name, sp in self.plan.services.items()
            },
        )


class OllamaProgress:
    """A pull's `ProgressListener` that reports Ollama's progress lines: one per file per step."""

    def __init__(self, report: PullReport) -> None:
        self.report = report
        self.files: dict[str, RemoteFile] = {}
        self.received: dict[str, int] = {}

    def start(self, label: str, files: Sequence[RemoteFile], total_bytes: int) -> None:
        self.files = {f.path: f for f in files}

    def file_started(self, path: str, size: int | None) -> None:
        self.received.setdefault(path, 0)
        self._report(path)

    def advance(self, path: str, n: int) -> None:
        self.received[path] = self.received.get(path, 0) + n
        self._report(path)

    def file_done(self, path: str) -> None:
        file = self.files.get(path)
        if file is not None and file.size is not None:
            self.received[path] = file.size
        self._report(path)

    def finish(self) -> None:
        self.report(PullUpdate("verifying sha256 digest"))

    def _report(self, path: str) -> None:
        file = self.files.get(path)
        digest = f"sha256:{file.sha256}" if file is not None and file.sha256 else None
        size = file.size if file is not None else None
        self.report(PullUpdate(f"pulling {path}", digest, size, self.received.get(path, 0)))


def _details(plan: ServicePlan) -> ModelDetails:
    facts, source = plan.facts, plan.config.model
    if facts is None:
        return ModelDetails(source=source, format=model_format(source))
    return ModelDetails(
        source=source,
        format=model_format(source) or "safetensors",
        family=facts.model_type,
        parameter_size=_parameter_size(facts.parameters),
        quantization_level=facts.quantization or DTYPE_LEVELS.get(facts.dtype, facts.dtype.upper()),
        parameter_count=facts.parameters,
        context_length=plan.context_window,
        size=plan.weights_bytes or 0,
    )


def _with_fix(error: ServestackError) -> str:
    return f"{error.message} ({error.fix})" if error.fix else error.message


def _parameter_size(parameters: int) -> str:
    """As Ollama writes it: 7.6B, 494M."""
    if parameters >= 10**9:
        return f"{parameters / 10**9:.1f}B"
    return f"{parameters / 10**6:.0f}M"
