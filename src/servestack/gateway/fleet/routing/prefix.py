"""An approximate prefix tree per replica: which prompt prefixes were sent where, recently.

The gateway cannot see an engine's prefix cache, so it remembers what it routed. A prompt is cut
into blocks of `BLOCK_CHARS` characters and each block gets a chained hash (the hash of the block
and of every block before it), as vLLM names its KV blocks. A chain of hashes is a path in a trie of
blocks: two prompts share the first k hashes exactly when they share their first k blocks. Each
endpoint keeps the hashes it was sent in an LRU dict bounded by an estimate of its cache size.

Inserting touches a prompt's blocks deepest first, so a block is always more recently used than
any block below it, and eviction takes leaves before their ancestors. The blocks an endpoint holds
are therefore closed under prefixes, and the longest cached prefix is found by binary search:
O(log n) lookups per endpoint, whatever the history.

Which endpoints hold a block is indexed too (`holders`), so the endpoints holding the longest prefix
of a prompt are found without asking every endpoint: the union of prefix-closed sets is closed under
prefixes, so the same binary search works over the whole pool.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import TypeVar

BLOCK_CHARS = 128  # about 32 tokens: fine enough for routing, and few hashes per prompt
CHARS_PER_TOKEN = 4.0  # English text in common tokenizers; the policies only compare estimates
BLOCK_TOKENS = BLOCK_CHARS / CHARS_PER_TOKEN
MAX_BLOCKS = 512  # the first ~16k tokens decide where a prompt goes; longer ones cost no more
DEFAULT_CAPACITY_TOKENS = 262_144
MAX_HOLDER_LOOKS = 64  # holders looked at when those of the longest prefix may not take the request

T = TypeVar("T")


def block_hashes(text: str, block_chars: int = BLOCK_CHARS) -> list[int]:
    """Chained hashes of the whole blocks of `text`, at most MAX_BLOCKS (a partial block is left out)."""
    hashes = []
    chained = 0
    end = min(len(text), MAX_BLOCKS * block_chars)
    for start in range(0, end - block_chars + 1, block_chars):
        chained = hash((chained, text[start : start + block_chars]))
        hashes.append(chained)
    return hashes


class PrefixIndex:
    """Per endpoint id: the prompt blocks recently routed there, at most `capacity_tokens` worth."""

    def __init__(self, capacity_tokens: int = DEFAULT_CAPACITY_TOKENS, block_chars: int = BLOCK_CHARS) -> None:
        self.block_chars = block_chars
        self.capacity_blocks = max(1, int(capacity_tokens * CHARS_PER_TOKEN / block_chars))
        self._blocks: dict[str, OrderedDict[int, None]] = {}
        self._holders: dict[int, list[str]] = {}  # block → the endpoints holding it
        self._rng = random.Random()

    def matched(self, endpoint_id: str, hashes: Sequence[int]) -> int:
        """How many leading blocks of `hashes` the endpoint holds."""
        blocks = self._blocks.get(endpoint_id)
        if not blocks or not hashes or hashes[0] not in blocks:
            return 0
        if hashes[-1] in blocks:
            return len(hashes)
        low, high = 1, len(hashes) - 1  # hashes[low - 1] is held, hashes[high] is not
        while low < high:
            middle = (low + high) // 2
            if hashes[middle] in blocks:
                low = middle + 1
            else:
                high = middle
        return low

    def longest(self, hashes: Sequence[int], eligible: Callable[[str], T | None], limit: int) -> tuple[int, list[T]]:
        """(k, up to `limit` eligible endpoints holding the first k blocks of `hashes`), k the largest such.

        `eligible` maps an endpoint id to the endpoint when it may take the request (else None). Holders
        are looked at from a random one on, so a prefix held by many spreads over all of them. When the
        holders of the longest prefix may not take it, shorter prefixes are tried until `MAX_HOLDER_LOOKS`
        holders were looked at; then (0, []): the prompt counts as cold.
        """
        holders = self._holders
        if not hashes or hashes[0] not in holders:
            return 0, []
        low, high = 1, len(hashes)  # hashes[low - 1] is held by someone, hashes[high] (if any) by nobody
        while low < high:
            middle = (low + high) // 2
            if hashes[middle] in holders:
                low = middle + 1
            else:
                high = middle
        looks = 0
        for count in range(low, 0, -1):
            found = []
            held = holders[hashes[count - 1]]
            size = len(held)
            start = int(self._rng.random() * size)
            for turn in range(start, start + size):  # held is not copied: a prefix may be held by every replica
                looks += 1
                endpoint = eligible(held[turn % size])
                if endpoint is not None:
                    found.append(endpoint)
                    if len(found) == limit:
                        break
                if looks >= MAX_HOLDER_LOOKS:
                    break
            if found or looks >= MAX_HOLDER_LOOKS:
                return (count, found) if found else (0, [])
        return 0, []

    def insert(self, endpoint_id: str, hashes: Sequence[int]) -> None:
        """Remember that the prompt with `hashes` went to the endpoint; evict past the capacity."""
        blocks = self._blocks.get(endpoint_id)
        if blocks is None:
            blocks = self._blocks[endpoint_id] = OrderedDict()
        holders = self._holders
        for block in reversed(hashes):
            if block in blocks:
                blocks.move_to_end(block)
            else:
                blocks[block] = None
                held = holders.get(block)
                if held is None:
                    holders[block] = [endpoint_id]
                else:
                    held.append(endpoint_id)
        excess = len(blocks) - self.capacity_blocks
        for _ in range(excess):
            self._release(endpoint_id, blocks.popitem(last=False)[0])

    def _release(self, endpoint_id: str, block: int) -> None:
        held = self._holders.get(block)
        if held is not None and endpoint_id in held:
            held.remove(endpoint_id)
            if not held:
                del self._holders[block]

    def size(self, endpoint_id: str) -> int:
        """Blocks held for the endpoint."""
        blocks = self._blocks.get(endpoint_id)
        return len(blocks) if blocks else 0

    def forget(self, endpoint_id: str) -> None:
        for block in self._blocks.pop(endpoint_id, ()):
            self._release(endpoint_id, block)
