"""The local paths a stack names: model files and folders, environments, images, mounts, templates.

One list, so that whoever checks them (the CLI, before `plan` and `up`) and whoever reports them
(the planner) agree on which settings are paths and what to do when one is missing. Paths are as
loaded: `./x`, `../x` and `~` already made absolute against the stack file's folder.
"""

from __future__ import annotations

from dataclasses import dataclass

from servestack.stack.models import MODELSCOPE_PREFIX, PACKAGE_PREFIX, is_local_path
from servestack.stack.runtime_schema import ApptainerRuntime, ContainerRuntime, NativeRuntime
from servestack.stack.schema import Service, Stack
from servestack.stack.source import KeyPath

# A model written as a bare file name (`model.gguf`) is a file, never a hub id.
MODEL_FILE_SUFFIXES = (".gguf", ".safetensors", ".bin", ".pt", ".pth")
TEMPLATE_SUFFIXES = (".jinja", ".j2")

MOUNT_FIX = "create it (mkdir -p), or correct the path"


@dataclass(frozen=True)
class LocalPath:
    """A setting that names something on this machine, and what to do when it is not there."""

    key: KeyPath  # ("services", NAME, "model"), ("services", NAME, "runtime", "binds", 0), …
    path: str  # as loaded; for models also a `package:` or `modelscope:` reference
    what: str  # "file", "folder", "file or folder": for "no such …"
    fix: str
    mount: bool = False  # the source of a `SRC:DST[:ro]` mount: `path` is SRC

    def as_written(self, text: str) -> str:
        """The path in the stack file's `text` for this setting (a mount's source part)."""
        return text.partition(":")[0] if self.mount else text


def is_reference(path: str) -> bool:
    """A `package:` or `modelscope:` model reference: resolved to a path, not a path itself."""
    return path.startswith((PACKAGE_PREFIX, MODELSCOPE_PREFIX))


def names_local_model(model: str) -> bool:
    """Whether `model` names something on this machine (a path, a file name or a reference), not a hub id."""
    return is_local_path(model) or model.startswith(MODELSCOPE_PREFIX) or model.lower().endswith(MODEL_FILE_SUFFIXES)


def local_paths(stack: Stack) -> list[LocalPath]:
    """Every local path the stack names, service by service."""
    return [path for name, service in stack.services.items() for path in _service_paths(name, service)]


def _service_paths(name: str, service: Service) -> list[LocalPath]:
    at = ("services", name)
    paths = []
    if names_local_model(service.model):
        is_file = service.model.lower().endswith(MODEL_FILE_SUFFIXES)
        fix = "correct the path (./ and ../ are relative to the stack file's folder), or give a hub id"
        paths.append(LocalPath((*at, "model"), service.model, "file" if is_file else "file or folder", fix))
    template = service.chat_template
    if template is not None and _names_template_file(template):
        fix = "correct the path, or name a template the engine has built in"
        paths.append(LocalPath((*at, "chat_template"), template, "file", fix))
    return paths + _runtime_paths(name, service)


def _names_template_file(template: str) -> bool:
    """A template file, not an engine's built-in template name or a template written inline (`{{ … }}`)."""
    return "{" not in template and ("/" in template or template.endswith(TEMPLATE_SUFFIXES))


def _runtime_paths(name: str, service: Service) -> list[LocalPath]:
    at = ("services", name, "runtime")
    runtime = service.runtime
    if isinstance(runtime, NativeRuntime):
        return _native_paths(at, runtime)
    paths = []
    if isinstance(runtime, ApptainerRuntime):
        if "://" not in runtime.image:
            fix = "build or copy the image there, or give a docker:// reference"
            paths.append(LocalPath((*at, "image"), runtime.image, "file", fix))
        if runtime.sif:
            paths.append(LocalPath((*at, "sif"), runtime.sif, "file", f"`servestack pull-image {name}` writes it"))
        if runtime.model_cache:  # Apptainer refuses a bind whose source is missing; Docker creates it
            paths.append(LocalPath((*at, "model_cache"), runtime.model_cache, "folder", MOUNT_FIX))
    return paths + [
        LocalPath((*at, key, i), source, "file or folder", MOUNT_FIX, mount=True)
        for key, mounts in _mounts(runtime)
        for i, mount in enumerate(mounts)
        if (source := mount.partition(":")[0]).startswith("/")  # not a named Docker volume
    ]


def _native_paths(at: KeyPath, runtime: NativeRuntime) -> list[LocalPath]:
    paths = []
    if runtime.python:
        paths.append(LocalPath((*at, "python"), runtime.python, "file", "correct the path to the interpreter"))
    if runtime.venv:
        paths.append(
            LocalPath((*at, "venv"), runtime.venv, "folder", "create it (python -m venv), or correct the path")
        )
    if runtime.binary and "/" in runtime.binary:  # a bare name is looked up on PATH
        paths.append(
            LocalPath((*at, "binary"), runtime.binary, "file", "install the engine there, or correct the path")
        )
    if runtime.pixi:
        fix = "correct the path to the pixi project (its pixi.toml or folder)"
        paths.append(LocalPath((*at, "pixi", "manifest"), runtime.pixi.manifest, "file or folder", fix))
    return paths


def _mounts(runtime: ApptainerRuntime | ContainerRuntime) -> list[tuple[str, list[str]]]:
    if isinstance(runtime, ApptainerRuntime):
        return [("binds", runtime.binds)]
    return [("volumes", runtime.volumes)]
