"""Load a stack file: YAML → interpolation → schema, with errors that name file, line and key.

`load_stack` is the only YAML parser of stack files in servestack.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from dotenv import dotenv_values
from pydantic import BaseModel, ValidationError

from servestack.errors import StackError
from servestack.stack.interpolate import BadReference, MissingVariable, interpolate
from servestack.stack.runtime_schema import RUNTIME_KINDS, PixiEnvironment
from servestack.stack.schema import GatewayConfig, Routing, Service, Stack
from servestack.stack.source import KeyPath, SourceMap, map_source

DEFAULT_STACK_RESOURCE = "default.yaml"
MAX_REPORTED_ERRORS = 5


def default_stack_text() -> str:
    """The bundled default stack, comments included (what `servestack init` writes)."""
    return resources.files("servestack.stack").joinpath(DEFAULT_STACK_RESOURCE).read_text()


def load_default_stack() -> Stack:
    return parse_stack(default_stack_text(), source="<default stack>", environ={})


def load_stack(path: Path, environ: Mapping[str, str] | None = None) -> Stack:
    """Read, interpolate and validate the stack file at `path`.

    Variables come from `environ` (default: the process environment), then the `.env` beside the file.
    Relative model paths (`./x`, `../x`) are made absolute against the file's folder.
    """
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise StackError(
            f"{path}: stack file not found", fix="`servestack init` writes a starting stack.yaml"
        ) from None
    except OSError as exc:
        raise StackError(f"{path}: cannot read the stack file: {exc.strerror}") from None
    variables = {**read_dotenv(path), **(os.environ if environ is None else environ)}
    return parse_stack(text, source=str(path), environ=variables, base_dir=path.parent)


def parse_stack(text: str, *, source: str, environ: Mapping[str, str], base_dir: Path | None = None) -> Stack:
    """Validate stack-file `text`; `source` names it in errors (and in the stack's source map)."""
    where, data = _parse_yaml(text, source)
    if data is None:
        raise StackError(f"{source}: the stack file is empty", fix="it needs at least a `services:` section")
    if not isinstance(data, dict):
        raise StackError(f"{source}:1: expected a mapping with `services:` at the top, got {type(data).__name__}")
    try:
        data = interpolate(data, environ)
    except MissingVariable as exc:
        raise StackError(
            f"{where.locate(exc.path)}: variable ${{{exc.variable}}} is not set",
            fix=f"export {exc.variable}=..., put it in the .env beside the stack file, "
            f"or write ${{{exc.variable}:-default}}",
        ) from None
    except BadReference as exc:
        raise StackError(f"{where.locate(exc.path)}: {exc.text!r} is not a ${{VARIABLE}} reference") from None
    if base_dir is not None:
        _absolutize_paths(data, base_dir)
    try:
        stack = Stack.model_validate(data)
    except ValidationError as exc:
        raise StackError(_format_validation_error(exc, where)) from None
    stack._source = where  # set once, here; where a stack was written is not part of its value
    return stack


def read_dotenv(stack_path: Path) -> dict[str, str]:
    """The variables of the `.env` beside a stack file (empty if there is none).

    Returned, never written to `os.environ`: whoever starts engines decides what they get (the HF token).
    """
    env_file = stack_path.parent / ".env"
    if not env_file.is_file():
        return {}
    return {k: v for k, v in dotenv_values(env_file).items() if v is not None}


def _parse_yaml(text: str, source: str) -> tuple[SourceMap, Any]:
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        where = map_source(node, source)  # before construction, which merges `<<` keys into the tree
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark else ""
        problem = exc.problem or exc.context or "invalid YAML"
        raise StackError(f"{source}{line}: invalid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise StackError(f"{source}: invalid YAML: {exc}") from None
    finally:
        loader.dispose()
    return where, data


# Runtime keys holding host paths, made absolute against the stack file's folder like `model`.
_RUNTIME_PATH_KEYS = ("python", "venv", "binary", "sif", "image", "model_cache")
_RUNTIME_MOUNT_KEYS = ("binds", "volumes")


def _absolutize_paths(data: dict[str, Any], base_dir: Path) -> None:
    services = data.get("services")
    if not isinstance(services, dict):
        return
    for service in services.values():
        if not isinstance(service, dict):
            continue
        service["model"] = _absolute(service.get("model"), base_dir)
        if "chat_template" in service:
            service["chat_template"] = _absolute(service["chat_template"], base_dir)
        runtime = service.get("runtime")
        if isinstance(runtime, dict):
            _absolutize_runtime(runtime, base_dir)


def _absolutize_runtime(runtime: dict[str, Any], base_dir: Path) -> None:
    for key in _RUNTIME_PATH_KEYS:
        if key in runtime:
            runtime[key] = _absolute(runtime[key], base_dir)
    for key in _RUNTIME_MOUNT_KEYS:
        mounts = runtime.get(key)
        if isinstance(mounts, list):
            runtime[key] = [_absolute_mount(m, base_dir) for m in mounts]
    pixi = runtime.get("pixi")
    if isinstance(pixi, dict) and "manifest" in pixi:
        pixi["manifest"] = _absolute(pixi["manifest"], base_dir)


def _absolute(value: Any, base_dir: Path) -> Any:
    if isinstance(value, str) and value.startswith(("./", "../", "~")):
        return str((base_dir / Path(value).expanduser()).resolve())
    return value


def _absolute_mount(mount: Any, base_dir: Path) -> Any:
    if not isinstance(mount, str):
        return mount
    source, sep, rest = mount.partition(":")
    return f"{_absolute(source, base_dir)}{sep}{rest}"


def _format_validation_error(exc: ValidationError, where: SourceMap) -> str:
    errors = exc.errors()
    lines = [_format_one(error, where) for error in errors[:MAX_REPORTED_ERRORS]]
    if len(errors) > MAX_REPORTED_ERRORS:
        lines.append(f"... and {len(errors) - MAX_REPORTED_ERRORS} more")
    return "\n".join(lines)


def _format_one(error: Any, where: SourceMap) -> str:
    loc = _schema_path(tuple(error["loc"]))
    at = where.locate(_without_runtime_kind(loc))
    if error["type"] == "extra_forbidden":
        return f"{at}: unknown key{_suggest(loc)}"
    if error["type"] == "union_tag_invalid":
        expected = error.get("ctx", {}).get("expected_tags", "")
        return f"{at}: unknown kind {error['ctx']['tag']!r} (expected one of {expected})"
    if error["type"] == "missing":
        return f"{at}: required key is missing"
    message = error["msg"].removeprefix("Value error, ")
    got = error.get("input")
    shown = "" if isinstance(got, dict | list) or got is None else f" (got {got!r})"
    return f"{at}: {message}{shown}"


def _schema_path(loc: tuple[Any, ...]) -> KeyPath:
    # pydantic adds the name of a union member or validator stage to `loc`; keep real keys only.
    return tuple(part for part in loc if isinstance(part, int) or not part.startswith(("function-", "tagged-union")))


def _without_runtime_kind(loc: KeyPath) -> KeyPath:
    # pydantic names the chosen runtime kind in `loc` (runtime.docker.image); the file has no such key.
    if len(loc) > 3 and loc[2] == "runtime" and loc[3] in RUNTIME_KINDS:
        return (*loc[:3], *loc[4:])
    return loc


def _suggest(path: KeyPath) -> str:
    model: type[BaseModel] | None = _model_at(path[:-1])
    if model is None or not path:
        return ""
    close = difflib.get_close_matches(str(path[-1]), list(model.model_fields), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _model_at(path: KeyPath) -> type[BaseModel] | None:
    """The schema model that owns the keys at `path` (for 'did you mean' hints)."""
    shapes: dict[tuple[str, ...], type[BaseModel]] = {
        (): Stack,
        ("gateway",): GatewayConfig,
        ("routing",): Routing,
        ("services", "*"): Service,
        **{("services", "*", "runtime", kind): model for kind, model in RUNTIME_KINDS.items()},
        ("services", "*", "runtime", "native", "pixi"): PixiEnvironment,
    }
    key = tuple("*" if i == 1 and path and path[0] == "services" else str(p) for i, p in enumerate(path))
    if len(key) == 2 and key[0] == "gateway" and key[1] in GatewayConfig.model_fields:
        return _section_model(GatewayConfig.model_fields[key[1]].annotation)
    return shapes.get(key)


def _section_model(annotation: object) -> type[BaseModel] | None:
    """The model class of a `gateway:` section (`X` or `X | None`)."""
    for candidate in (annotation, *getattr(annotation, "__args__", ())):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None
