"""Where every key of a stack file is written: its line, and its value as written.

The loader builds a `SourceMap` from the YAML node tree and keeps it with the Stack it returns, so a
finding made long after loading (a model file that does not exist, a busy port) can still say
`stack.yaml:7: services.chat.model`. The same walk refuses a key written twice in one mapping, which
YAML would otherwise resolve silently by keeping the last.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import yaml

from servestack.errors import StackError

KeyPath = tuple[str | int, ...]
MERGE_KEY = "<<"


@dataclass(frozen=True, eq=False)
class SourceMap:
    """Lines (1-based) and written scalar values by key path; keys and indices are matched as text.

    Where a stack was written is not part of its value: any two source maps compare equal, so two
    stacks with the same settings are equal wherever they were loaded from.
    """

    source: str = ""
    lines: Mapping[tuple[str, ...], int] = field(default_factory=dict)
    texts: Mapping[tuple[str, ...], str] = field(default_factory=dict)

    def line(self, path: KeyPath) -> int | None:
        """The line of the deepest part of `path` the file writes."""
        key = _text_path(path)
        for end in range(len(key), 0, -1):
            if key[:end] in self.lines:
                return self.lines[key[:end]]
        return None

    def written(self, path: KeyPath) -> str | None:
        """The scalar at `path` as written in the file (before `${VAR}` and path resolution)."""
        return self.texts.get(_text_path(path))

    def locate(self, path: KeyPath) -> str:
        """`file:line: dotted.key` (the parts that are known)."""
        dotted = ".".join(str(part) for part in path) or "(top level)"
        if not self.source:
            return dotted
        line = self.line(path)
        return f"{self.source}:{line}: {dotted}" if line else f"{self.source}: {dotted}"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SourceMap)

    def __hash__(self) -> int:
        return 0


def map_source(node: yaml.Node | None, source: str) -> SourceMap:
    """The source map of a YAML document; StackError for a key written twice in one mapping."""
    lines: dict[tuple[str, ...], int] = {}
    texts: dict[tuple[str, ...], str] = {}
    _walk(node, (), lines, texts, source, set())
    return SourceMap(source, lines, texts)


def _walk(
    node: yaml.Node | None,
    path: tuple[str, ...],
    lines: dict[tuple[str, ...], int],
    texts: dict[tuple[str, ...], str],
    source: str,
    active: set[int],
) -> None:
    if node is None or id(node) in active:  # an alias that refers to its own ancestor
        return
    active.add(id(node))
    if isinstance(node, yaml.ScalarNode):
        texts[path] = node.value
    for key, child, line in _children(node, path, source):
        lines[(*path, key)] = line
        _walk(child, (*path, key), lines, texts, source, active)
    active.discard(id(node))


def _children(node: yaml.Node, path: tuple[str, ...], source: str) -> list[tuple[str, yaml.Node, int]]:
    """(key, value node, line) of a mapping's keys or a sequence's items."""
    if isinstance(node, yaml.SequenceNode):
        return [(str(i), item, item.start_mark.line + 1) for i, item in enumerate(node.value)]
    if not isinstance(node, yaml.MappingNode):
        return []
    first: dict[str, int] = {}
    children = []
    for key_node, value in node.value:
        key, line = str(key_node.value), key_node.start_mark.line + 1
        if key == MERGE_KEY:  # `<<: *defaults` merges keys that the mapping may then override
            continue
        if key in first:
            raise StackError(
                f"{source}:{line}: {'.'.join((*path, key))}: duplicate key (first on line {first[key]}); "
                "YAML would silently keep only the last one",
                fix="remove one of the two",
            )
        first[key] = line
        children.append((key, value, line))
    return children


def _text_path(path: KeyPath) -> tuple[str, ...]:
    return tuple(str(part) for part in path)
