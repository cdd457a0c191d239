"""One engine, one place: the registry is the one list of engines, and each entry declares every part.

Adding an engine means one entry in `ENGINES` (plus the schema's `EngineName`, which `stack/` cannot
import: a test here fails when they drift) and its tests. No other module may list engine names.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import get_args

import pytest

from servestack.dialect import Dialect
from servestack.engines import ENGINES, EngineConfig, EngineFlags, Parallelism, Unchecked
from servestack.stack import Service
from servestack.stack.schema import EngineName

SRC = Path(__file__).resolve().parents[2] / "src" / "servestack"
NAMES = frozenset(ENGINES)

# Engine names written outside engines/ that are not engine tables: file → the names it may spell.
ALLOWED = {
    "stack/schema.py": NAMES,  # EngineName: stack/ imports nothing of ours; test_the_schema_lists_the_registry
    "sim/config.py": {"sim"},  # the simulator's default served name, not an engine table
    "cli/__init__.py": {"sim"},  # the `sim` command's module
}


def test_the_schema_lists_the_registry() -> None:
    assert set(get_args(EngineName)) == NAMES, "EngineName in stack/schema.py must list exactly ENGINES"


@pytest.mark.parametrize("name", sorted(ENGINES))
def test_every_engine_declares_every_part(name: str) -> None:
    engine = ENGINES[name]
    assert engine.name == name
    assert isinstance(engine.flags, EngineFlags)
    assert isinstance(engine.parallelism, Parallelism)
    assert all(callable(rule) for rule in engine.tp_rules)
    assert isinstance(engine.dialect, Dialect)
    assert all(route.startswith("/") for route in engine.native_routes)
    memory = engine.memory
    if isinstance(memory, Unchecked):
        assert memory.reason, "an engine without a memory rule says why"
    else:
        assert callable(memory.budget) and callable(memory.default_context)
    if engine.parallelism is Parallelism.TENSOR:
        assert engine.tp_rules, "an engine with TP says which sizes are valid"


@pytest.mark.parametrize("name", sorted(ENGINES))
def test_the_command_uses_the_declared_flags(name: str) -> None:
    """The plan explains its decisions with `flags`; the command must pass them under the same names."""
    engine = ENGINES[name]
    flags = engine.flags
    config = EngineConfig(
        model="org/model",
        served_names=("m",),
        port=9000,
        gpus=(0, 1),
        tp=2 if flags.tp else 1,
        context_length=4096 if flags.context else None,
        memory_fraction=0.5 if flags.fraction else None,
    )
    args = engine.command(Service(engine=name, model="org/model"), config).args  # type: ignore[arg-type]
    for flag, value in ((flags.context, "4096"), (flags.tp, "2"), (flags.fraction, "0.5")):
        if flag is not None:
            assert args[args.index(flag) + 1] == value


def test_no_other_module_lists_engine_names() -> None:
    found = {}
    for path in sorted(SRC.rglob("*.py")):
        where = path.relative_to(SRC).as_posix()
        if where.startswith("engines/"):
            continue
        names = _engine_literals(path) - ALLOWED.get(where, set())
        if names:
            found[where] = sorted(names)
    assert found == {}, "engine knowledge belongs on the engine's adapter (engines/), read through ENGINES"


def _engine_literals(path: Path) -> set[str]:
    """Engine names written as string constants (in a table, a comparison or an assignment)."""
    tree = ast.parse(path.read_text())
    return {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and node.value in NAMES}
