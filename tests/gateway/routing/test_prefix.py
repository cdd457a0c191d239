"""The approximate prefix index: chained block hashes, longest held prefix, LRU that evicts leaves first."""

from __future__ import annotations

from servestack.gateway.fleet.routing.base import RouteRequest, routing_text
from servestack.gateway.fleet.routing.prefix import BLOCK_CHARS, MAX_BLOCKS, PrefixIndex, block_hashes

SYSTEM = "You are a careful assistant. " * 40  # about 1,100 characters


def test_hashes_are_chained_so_equal_blocks_after_a_difference_differ() -> None:
    a = block_hashes("x" * 64 + "y" * 64, 64)
    b = block_hashes("z" * 64 + "y" * 64, 64)
    assert len(a) == 2
    assert a[1] != b[1]  # same second block, different history
    assert block_hashes("x" * 64 + "y" * 64 + "tail", 64) == a  # a partial block is left out


def test_matched_counts_the_longest_held_prefix() -> None:
    index = PrefixIndex(capacity_tokens=100_000)
    first = block_hashes(SYSTEM + "question one")
    index.insert("a", first)
    assert index.matched("a", first) == len(first)
    other = block_hashes(SYSTEM[:640] + "something else entirely, " * 20)
    assert index.matched("a", other) == 5  # the first 640 characters (five blocks of 128) are shared
    assert index.matched("b", first) == 0
    assert index.size("a") == len(first)


def test_eviction_takes_leaves_first_and_keeps_prefixes_closed() -> None:
    index = PrefixIndex(capacity_tokens=16 * 20, block_chars=64)  # 20 blocks
    old = block_hashes("old " * 400, 64)  # 25 blocks: the deepest 5 are evicted at once
    index.insert("a", old)
    assert index.size("a") == 20
    assert index.matched("a", old) == 20
    index.insert("a", block_hashes("new " * 160, 64))  # 10 blocks push out 10 leaves of `old`
    assert index.matched("a", old) == 10


def test_forget_drops_an_endpoint() -> None:
    index = PrefixIndex()
    hashes = block_hashes(SYSTEM)
    index.insert("a", hashes)
    index.forget("a")
    assert index.matched("a", hashes) == 0 and index.size("a") == 0


def test_chat_text_of_a_later_turn_starts_with_the_earlier_turn() -> None:
    turn1 = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "hi"}]
    turn2 = [*turn1, {"role": "assistant", "content": "hello"}, {"role": "user", "content": "more"}]
    assert routing_text({"messages": turn2}).startswith(routing_text({"messages": turn1}))
    parts = [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]
    assert routing_text({"messages": parts}) == "user\x1fab"


def test_completion_prompts_of_every_shape() -> None:
    assert routing_text({"prompt": "abc"}) == "abc"
    assert routing_text({"prompt": ["first", "second"]}) == "first"
    assert routing_text({"prompt": [1, 2, 3]}) == "1 2 3"
    assert routing_text({"prompt": [[4, 5]]}) == "4 5"
    assert routing_text({}) == ""
    request = RouteRequest({"prompt": "x" * 400})
    assert request.tokens == 100 and len(request.blocks) == 3


def test_very_long_prompts_hash_only_their_head() -> None:
    assert len(block_hashes("x" * (MAX_BLOCKS + 10) * BLOCK_CHARS)) == MAX_BLOCKS
