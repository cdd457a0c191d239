"""The prefix cache: a radix tree over token ids, bounded in tokens, evicting least recently used leaves.

It keeps what an engine's prefix cache keeps: sequences whose KV has been computed. `match` tells
how many leading tokens of a prompt are cached (and marks them used); `insert` adds a computed
sequence, splitting edges where it diverges; past the capacity, whole leaves go, oldest first,
the way SGLang's RadixCache evicts. Edges hold tuples so a whole edge compares in one C call.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence


class _Node:
    __slots__ = ("children", "key", "last_access", "parent")

    def __init__(self, key: tuple[int, ...], parent: _Node | None, last_access: int = 0) -> None:
        self.key = key
        self.parent = parent
        self.children: dict[int, _Node] = {}
        self.last_access = last_access


class RadixCache:
    """Cached token sequences, at most `capacity` tokens in all (0 switches caching off)."""

    def __init__(self, capacity: int) -> None:
        if capacity < 0:
            raise ValueError("capacity must be >= 0")
        self.capacity = capacity
        self.size = 0
        self._root = _Node((), None)
        self._tick = 0

    def match(self, ids: Sequence[int]) -> int:
        """How many leading tokens of `ids` are cached; the matched path becomes most recently used."""
        tokens = tuple(ids)
        tick = self._next_tick()
        node, i, n = self._root, 0, len(tokens)
        while i < n:
            child = node.children.get(tokens[i])
            if child is None:
                break
            child.last_access = tick
            key = child.key
            if tokens[i : i + len(key)] == key:
                node, i = child, i + len(key)
                continue
            return i + _common_length(key, tokens, i)
        return i

    def insert(self, ids: Sequence[int]) -> None:
        """Cache `ids` (at most `capacity` of them), then evict down to the capacity."""
        if self.capacity == 0:
            return
        tokens = tuple(ids[: self.capacity])
        tick = self._next_tick()
        node, i, n = self._root, 0, len(tokens)
        while i < n:
            child = node.children.get(tokens[i])
            if child is None:
                node.children[tokens[i]] = _Node(tokens[i:], node, tick)
                self.size += n - i
                break
            child.last_access = tick
            key = child.key
            if tokens[i : i + len(key)] == key:
                node, i = child, i + len(key)
                continue
            node = self._split(child, _common_length(key, tokens, i))
            i += len(node.key)
        if self.size > self.capacity:
            self.evict(self.size - self.capacity)

    def evict(self, tokens: int) -> int:
        """Drop least recently used leaves until at least `tokens` are freed (or the tree is empty)."""
        leaves = [(node.last_access, id(node), node) for node in self._nodes() if not node.children]
        heapq.heapify(leaves)
        freed = 0
        while leaves and freed < tokens:
            _, _, leaf = heapq.heappop(leaves)
            parent = leaf.parent
            assert parent is not None
            del parent.children[leaf.key[0]]
            freed += len(leaf.key)
            if parent is not self._root and not parent.children:
                heapq.heappush(leaves, (parent.last_access, id(parent), parent))
        self.size -= freed
        return freed

    def clear(self) -> None:
        self._root = _Node((), None)
        self.size = 0

    def _split(self, child: _Node, at: int) -> _Node:
        """Cut `child`'s edge after `at` tokens; return the new node holding the first part."""
        parent = child.parent
        assert parent is not None and 0 < at < len(child.key)
        middle = _Node(child.key[:at], parent, child.last_access)
        parent.children[middle.key[0]] = middle
        child.key = child.key[at:]
        child.parent = middle
        middle.children[child.key[0]] = child
        return middle

    def _nodes(self) -> list[_Node]:
        found, stack = [], list(self._root.children.values())
        while stack:
            node = stack.pop()
            found.append(node)
            stack.extend(node.children.values())
        return found

    def _next_tick(self) -> int:
        self._tick += 1
        return self._tick


def _common_length(key: tuple[int, ...], tokens: tuple[int, ...], start: int) -> int:
    limit = min(len(key), len(tokens) - start)
    length = 0
    while length < limit and key[length] == tokens[start + length]:
        length += 1
    return length
